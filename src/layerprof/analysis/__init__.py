"""Questions asked of reports: budgets, compare, scaling, what-ifs."""

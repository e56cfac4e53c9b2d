"""Walking a model: inputs, the twin, the module stack, the dispatch-mode counter, backward attribution."""

"""The entry points users call: analyze, profile, Profiler, watch, and where watch() sends reports."""

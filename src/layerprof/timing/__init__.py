"""Clocks (perf_counter, CUDA events), forward and backward timing, kernel attribution."""

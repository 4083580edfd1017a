"""Running suites against one model: suite loading, the runner (batching, caching, resuming), data-parallel ranks,
the I/O log. `evaluate(spec, suites)` is the entry point; it returns one `RunResult`."""

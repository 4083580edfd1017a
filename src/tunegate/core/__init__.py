"""The vocabulary every stage speaks (Sample, Request, Response, Score, Metric, RunResult, Status), its errors, io,
config models, the response cache and the plugin registry. Imports nothing else from tunegate."""

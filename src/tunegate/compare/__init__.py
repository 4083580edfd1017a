"""Base vs candidate on the same samples: the paired `Comparison` of two `RunResult`s, and the statistics behind it."""

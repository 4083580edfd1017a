"""The decision: a `Policy` of rules over a `Comparison` gives a `Verdict` (PASS, FAIL or INCOMPLETE); `plan` sizes
suites so each rule can decide."""

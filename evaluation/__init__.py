"""Speech-LM adapters, Known-t2t / Known-s2t recall filters, the tracing benchmark run, its statistics and reports."""

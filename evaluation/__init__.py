"""Speech-LM adapters, Known-t2t / Known-s2t filters and the tracing benchmark (issue 5: not built yet)."""

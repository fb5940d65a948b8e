"""liveprof's service side: sources, derivers, sinks and the command line."""

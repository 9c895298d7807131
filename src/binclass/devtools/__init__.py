"""Developer tools, apart from the library: the benchmark, the posted training script it compares
against, and the peak-memory probe. Nothing in the library imports them."""

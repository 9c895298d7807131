"""The training engine: the step (eager or a CUDA graph), the epoch loop and its driver, optimizers and
schedules, the weight average, and inference. It knows nothing of recipes or the command line."""

"""Every file of a run folder, by name. The names are a contract: files are added, never renamed."""

CONFIG_FILE = "config.json"  # every setting, resolved, and the environment it ran in
METRICS_FILE = "metrics.csv"  # one row per epoch
STEPS_FILE = "steps.csv"  # one row per optimizer step
MODEL_FILE = "model.safetensors"  # weights of the last completed epoch
BEST_FILE = "best.safetensors"  # weights of the epoch with the lowest finite validation loss
META_FILE = "model.json"  # everything predict needs besides the weights
STATE_FILE = "state.safetensors"  # the full training state at the last checkpoint, for --resume
# The weights the state resumes with: a second name (hard link) of its epoch's model file, so that they
# are written once. Two names, used in turn, so that the file the state on disk names is never replaced.
STATE_WEIGHTS = ("state-weights-a.safetensors", "state-weights-b.safetensors")
PREDICTIONS_FILE = "val_predictions.csv"  # the last epoch's model on every validation image
# the kept model on the training images held out by --calibration-split: what calibrate and threshold fit on
CALIBRATION_PREDICTIONS_FILE = "calibration_predictions.csv"
EVALUATION_FILE = "evaluation.json"  # written by `binclass evaluate`
DIAGNOSIS_FILE = "diagnosis.json"  # the doctor's findings
GALLERY_FILE = "gallery.json"  # the worst validation errors with thumbnails and heatmaps, for the report
LABEL_ISSUES_FILE = "label_issues.json"  # training images whose label looks wrong (the label audit)
EXCLUDED_FILE = "excluded.txt"  # the images --exclude left out of the run, one path per line
TRACKING_FILE = "tracking.json"  # the run's id in MLflow / Weights & Biases (--track), for --resume and later commands
OOD_FILE = "ood.safetensors"  # the training images' features and the threshold of out-of-distribution scores
SEEDS_FILE = "seeds.json"  # the summary of a --seeds run, in its parent folder
CURVES_PLOT = "curves.png"
CONFUSION_PLOT = "confusion.png"
ROC_PLOT = "roc.png"
RELIABILITY_PLOT = "reliability.png"
REPORT_FILE = "report.html"
TRAIN_LOG = "train.log"  # every line a run printed, and the library output it kept off the terminal
LOCK_FILE = "train.lock"  # present while a run uses the folder: its process id and host

# A folder holding any of these holds a run: a new run there needs --overwrite.
RUN_MARKERS = (CONFIG_FILE, METRICS_FILE, MODEL_FILE)
# What --overwrite removes (and nothing else the folder holds).
RUN_FILES = RUN_MARKERS + (
    STEPS_FILE,
    BEST_FILE,
    META_FILE,
    PREDICTIONS_FILE,
    CALIBRATION_PREDICTIONS_FILE,
    EVALUATION_FILE,
    DIAGNOSIS_FILE,
    GALLERY_FILE,
    LABEL_ISSUES_FILE,
    EXCLUDED_FILE,
    OOD_FILE,
    TRACKING_FILE,
    STATE_FILE,
    *STATE_WEIGHTS,
    TRAIN_LOG,
)

"""The argmax bug, as the history checks and the lint rule both explain it: argmax (or max(dim=1)) over
a model with one output column is always 0, so the 'accuracy' counts only class-0 labels."""

ONE_OUTPUT_CAUSE = "argmax (or max(dim=1)) over a model with one output is always class 0"
ONE_OUTPUT_FIX = (
    "With one output, predict with `(torch.sigmoid(logits) >= 0.5).long()` (or `logits >= 0`) and compare with "
    "labels of the same shape; count correct predictions over the whole epoch."
)

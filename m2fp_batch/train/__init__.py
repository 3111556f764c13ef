"""Fine-tuning M2FP on reviewed labels: the objective, skin-tone-aware sampling and weights,
Ray Train driver, evaluation."""

"""Speed of the pipeline, measured as ratios against baselines timed in the same run."""

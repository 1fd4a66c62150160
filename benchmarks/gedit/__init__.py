"""GEdit-Bench: instruction editing judged by VIEScore (semantic consistency and perceptual quality, 0-10)."""

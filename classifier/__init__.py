"""The crisis-message classifier: model, training, evaluation and inference."""

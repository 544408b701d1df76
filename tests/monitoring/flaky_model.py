"""A model that raises on some inputs, pickled for a real model server in the tests (the
server runs from the repository root, so it can import this module)."""


class RaisesOnNegativeInput:
    """Predicts class 1 for rows of four numbers; raises when a row has a negative value."""

    n_features_in_ = 4

    def predict(self, rows):
        if (rows < 0).any():
            raise ValueError("negative measurement")
        return [1] * len(rows)

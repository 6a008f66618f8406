"""crnn_tf: hybrid DNN-HMM speech recognition with LSTM-based convolutional recurrent acoustic models.

Layout follows the data flow: layers -> models -> features/data -> hmm -> train -> export (serving lives
outside the package, in serving/, and tools/ holds the absl-flags entry points).
"""
__version__ = "0.1.0"

"""Keras layers of the paper's acoustic models.

Importing this package registers every layer with Keras serialization (package "crnn_tf"), so
`keras.models.load_model` finds them.
"""
from crnn_tf.layers.clstm import CLSTM
from crnn_tf.layers.conv_pool import FrequencyConvPool
from crnn_tf.layers.maxout import Maxout
from crnn_tf.layers.peephole_lstmp import PeepholeLSTMP
from crnn_tf.layers.splice import Splice

__all__ = ["CLSTM", "FrequencyConvPool", "Maxout", "PeepholeLSTMP", "Splice"]

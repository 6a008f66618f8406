"""Synthetic speech corpora in Kaldi layout, with phone timings, from espeak-ng and flite."""
from crnn_tf.corpus.lexicon import SIL, TASKS, Segment
from crnn_tf.corpus.make import OOV_WORD, Voice, make_corpus, split_voices
from crnn_tf.data.phone_times import frame_phones, read_phone_times
from crnn_tf.corpus.synth import MissingToolError, check_tools

__all__ = ["SIL", "TASKS", "Segment", "OOV_WORD", "Voice", "frame_phones", "make_corpus", "read_phone_times",
           "split_voices", "MissingToolError", "check_tools"]

"""HMM side of the hybrid system: lang/HCLG, monophone GMM-HMM alignment, priors, hybrid decoding, error rates.

Import order matters: kaldi_hmm_gmm must be loaded before kaldifst (the other order can deadlock); the submodules do that.
"""

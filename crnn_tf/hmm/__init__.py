"""HMM side of the hybrid system: lang/HCLG, monophone GMM-HMM alignment, priors, hybrid decoding, scoring.

Import order matters: kaldi_hmm_gmm must be loaded before kaldifst (see shared README); the submodules do that.
"""

"""`spirit-smollm2`: a speech LM trained here by Spirit LM's recipe (arXiv 2402.05755 §3) on SmolLM2-135M,
Whisper tiny.en units and Piper speech, so that the S→T half of the benchmark meets a model that listens.

`vocabulary` the added tokens · `sequences` the training sequences (speech→text, text→speech, speech
only, word-level interleaving, text replay) · `bundle` what a training run reads · `train` the run
(LoRA + new embeddings, on a GPU) · `delta` the shipped weights and how they load on the GGUF.
"""

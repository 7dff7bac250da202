"""The answer reader the project trains itself: multilingual-e5-small read as a cross-encoder
(question and passage in one input), its top layers fine-tuned on German news questions and
XQuAD, with a span head and a "no answer" score.

- data.py      training material from eval/ (news-qa over 10kGNAD, XQuAD), split by article
- model.py     the network, tokenisation of (question, window) pairs, span decoding
- train.py     `rag train-reader`: cached frozen layers, top layers trained, dev figures, weights
- runtime.py   `NeuralReader`: the shipped weights at answer time (ONNX int8 or torch)
- external.py  a user's own Hugging Face extractive-QA or CrossEncoder folder (`Config(reader=PATH)`)
- weights/     the shipped fine-tuned layers (fp16 safetensors) and their manifest

The answer stage uses it through `rag.answering.neural.ModelReader`.
"""

"""The trainer's torch code: a corpus of documents cut into examples, and the training
loop. The training worker (generation/worker/training.py) runs it for a job's row."""

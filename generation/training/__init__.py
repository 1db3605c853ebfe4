"""Fine-tuning a model on stories: the corpus (corpus.py) and the training loop
(trainer.py), plain Python with no Django, so that the Celery task, `manage.py train` and
the tests share them."""

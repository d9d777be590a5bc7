"""fer-harness: a Kaggle harness for the FER2013 facial expression challenge.

Every command is a module: `python -m competition.download`, `.folds`, `.train_folds`, `.ensemble`,
`.submit`, `.report`, `.bench`. Where things live on disk is in `competition.paths`.
"""
SLUG = "challenges-in-representation-learning-facial-expression-recognition-challenge"
CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES = len(CLASSES)
IMAGE_SIZE = 48

"""A model trained in one plain process through its pure forward function: the reference point.

    python benchmarks/single_process.py --model lenet5 --dataset fashion_mnist --epochs 1
    python benchmarks/single_process.py --model resnet18 --fit-input --train-images 10000 --epochs 1

No PS, no workers: Adam (the workers', helpers/optim.py) on mini-batches, eagerly with tf.function.
Prints test accuracy and the time per step, and writes them as JSON (--out). Useful to check a model and a dataset before a
distributed run, and as the speed of one step without communication.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import data
import data.flags
import models
from helpers import argtypes, provenance
from helpers.optim import MODEL_EPSILON, Adam
from runtime.metrics import classification_report
from runtime.progress import Progress

p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="lenet5", choices=models.NAMES)
p.add_argument("--push", default="front", help=models.PUSH_HELP + " (no effect on training here: every layer trains)")
data.flags.add_flags(p)  # --dataset, --data-dir, --fit-input, --train-images
p.add_argument("--epochs", type=argtypes.positive_int, default=1)
p.add_argument("--batch", type=argtypes.positive_int, default=125)
p.add_argument("--lr", type=argtypes.positive_float, default=1e-3)
p.add_argument("--seed", type=argtypes.nonnegative_int, default=0)
p.add_argument("--threads", type=argtypes.nonnegative_int, default=1, help="TensorFlow threads (0: TensorFlow decides)")
p.add_argument("--out", default="runs/single-process.json")
args = p.parse_args()
tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(args.threads)

try:
    dataset = data.flags.from_args(args, models.get(args.model).input_shape, args.seed)
    model = models.get(args.model, dataset.classes, push=args.push)
except (data.DataError, ValueError) as e:
    sys.exit(f"single_process: error: {e}")
params = {name: tf.Variable(value) for name, value in model.init(args.seed).items()}
optimizer = Adam(params, args.lr, epsilon=MODEL_EPSILON)  # the workers' Adam (helpers/optim.py)
variables = list(params.values())


@tf.function
def train_step(images, labels):
    with tf.GradientTape() as tape:
        logits = model.forward(params, images)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    optimizer.apply(tape.gradient(loss, variables))
    return loss


@tf.function
def predict(images):
    return tf.argmax(model.forward(params, images), axis=1)


rng = np.random.default_rng(args.seed)
steps = len(dataset.train_y) // args.batch
step_seconds = []
for epoch in range(args.epochs):
    order = rng.permutation(len(dataset.train_y))
    progress = Progress(steps, f"epoch {epoch + 1}/{args.epochs} step")
    for step in range(steps):
        idx = order[step * args.batch : (step + 1) * args.batch]
        start = time.perf_counter()
        loss = float(train_step(dataset.train_x[idx], dataset.train_y[idx].astype(np.int32)))
        step_seconds.append(time.perf_counter() - start)
        progress.update(step + 1, {"loss": loss})
    predictions = np.concatenate([predict(dataset.test_x[i : i + 1000]).numpy() for i in range(0, len(dataset.test_y), 1000)])
    report = classification_report(dataset.test_y, predictions, dataset.classes)
    print(f"epoch {epoch + 1}: test accuracy {report['accuracy']:.4f}, macro F1 {report['f1']:.4f}", flush=True)

result = {
    "model": model.name, "dataset": dataset.name, "data": dataset.provenance, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
    "threads": args.threads, "test_acc": report["accuracy"], "f1": report["f1"],
    "step_ms_median": 1000 * float(np.median(step_seconds[1:] or step_seconds)), "provenance": provenance.record(),
}
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
print(f"{model.name}/{dataset.name}: test accuracy {result['test_acc']:.4f} after {args.epochs} epoch(s); "
      f"median step {result['step_ms_median']:.1f} ms ({args.batch} images, {args.threads} thread(s)); wrote {args.out}")

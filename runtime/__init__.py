"""The distributed runtime: a parameter server and its workers over TensorFlow's gRPC runtime.

Between-graph replication (docs/design/architecture.md, "Processes and gRPC"): every process builds its own
tf.compat.v1 graph; state shared across processes lives on /job:ps/task:0 in FIFO queues addressed by shared name.
"""

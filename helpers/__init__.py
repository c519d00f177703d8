"""The lowest layer: small modules every package above may use, which import nothing of the project.

    npzio        every file the project writes and reads: pickle-free .npz with JSON metadata, JSON, bytes
    argtypes     argument types with range checks (one argparse line for a bad number)
    optim        the project's one Adam (named variables, one flat vector) and the learning-rate schedule
    provenance   where a record came from: commit, command line, versions, machine, date
    tfstart      TensorFlow without Keras: an entry script imports it before anything imports tensorflow

This file imports nothing, so `from helpers import tfstart` still runs before TensorFlow loads and
`from helpers import argtypes` loads neither TensorFlow nor numpy.
"""

"""Hardening: macro metrics, paths from any directory, a dead worker, ports, npz files, bad flags and outputs."""
from __future__ import annotations

import socket
import subprocess
import time

import numpy as np
import pytest

from runtime.cluster import Cluster, ClusterError, port_in_use, start_server
from runtime.metrics import classification_report


def test_macro_averages_cover_classes_that_are_only_predicted():
    # labels hold classes 0 and 1; class 2 is predicted once but never occurs.
    labels = np.array([0, 0, 1, 1])
    predictions = np.array([0, 2, 1, 1])
    report = classification_report(labels, predictions, classes=4)
    # per class (0, 1, 2): precision 1, 1, 0; recall 1/2, 1, 0; F1 2/3, 1, 0. Class 3 appears nowhere.
    assert report["accuracy"] == pytest.approx(3 / 4)
    assert report["precision"] == pytest.approx((1 + 1 + 0) / 3)
    assert report["recall"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert report["f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_macro_averages_of_a_class_never_predicted():
    labels = np.array([0, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1])
    report = classification_report(labels, predictions, classes=3)
    # precision 1, 1/3, 0; recall 1, 1, 0; F1 1, 1/2, 0
    assert report["precision"] == pytest.approx((1 + 1 / 3) / 3)
    assert report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(1.5 / 3)


def _time_wait_port() -> int:
    """A port whose only trace is a connection in TIME-WAIT: the accepting side closed first.

    The listener sets SO_REUSEADDR as gRPC's server does (Linux lets a bind pass a TIME-WAIT
    connection only when both sockets set it).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first, so its end (port `port`) goes to TIME-WAIT
    time.sleep(0.1)
    client.close()
    listener.close()
    return port


def test_a_port_in_time_wait_is_free_but_a_listening_one_is_not():
    port = _time_wait_port()
    states = subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert "TIME-WAIT" in states, states  # the situation the probe must accept
    assert not port_in_use(port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listening:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(("127.0.0.1", port))
        listening.listen(1)
        assert port_in_use(port)
        with pytest.raises(ClusterError, match=f"port {port} .* already in use"):
            start_server(Cluster((f"127.0.0.1:{port}",), ("127.0.0.1:1",)), "ps", 0)

"""What a TensorFlow error says, in one line.

A session's error message starts with the generic "Graph execution error:", then says where the
failing node was defined (a Python stack), then what actually happened, then the node in
`[[{{node NAME}}]]`. Reports need the part that says what happened and the node, not the first line.
"""
from __future__ import annotations

import re

import tensorflow as tf
from tensorflow.python.framework import error_interpolation

_NODE = re.compile(r"\[\[\{\{node ([^}]+)\}\}\]\]")
_GENERIC = "Graph execution error:"
# gRPC's own appendix to a status ("Additional GRPC error information from remote target ...") is
# kept: it names the peer. TensorFlow's "Original stack trace" is Python noise.
_STOP = ("Original stack trace for", "Errors may have originated from an input operation")


def explain(error: tf.errors.OpError, limit: int = 600) -> str:
    """The error's own text on one line (at most `limit` characters), with the failing node's name."""
    text = error.message or ""
    kept, in_stack = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith(_STOP):
            break
        if stripped == _GENERIC or not stripped:
            continue
        if stripped.startswith("Detected at node"):
            in_stack = True  # the Python stack of the node's definition follows, indented
            continue
        if in_stack and line[:1].isspace() and not _NODE.search(line):
            continue
        in_stack = False
        if stripped.startswith("Node: '"):
            continue  # named again in the [[{{node ...}}]] marker
        kept.append(stripped)
    body = " ".join(_NODE.sub("", line).strip() for line in kept)
    body = re.sub(r"\s+", " ", body).strip(" .")
    nodes = _NODE.findall(text)
    if nodes:
        body = f"{body} (node {nodes[0]})" if body else f"node {nodes[0]}"
    body = body or type(error).__name__
    return body if len(body) <= limit else body[: limit - 1] + "…"


DUPLICATE = "request was received twice"


def delivered_twice(error: tf.errors.OpError) -> bool:
    """Whether the PS's server refused a call as a second copy of one it had received (a gRPC retry)."""
    return DUPLICATE in (error.message or "")


def ambiguous(error: tf.errors.OpError) -> bool:
    """Whether the failed call may or may not have taken effect, so that asking the PS what happened can
    recover it: an Aborted whose words name no cause, or a call gRPC delivered twice (the PS refused the
    second copy; the first may have run, or may have been cancelled with the step)."""
    return isinstance(error, tf.errors.AbortedError) and (delivered_twice(error) or not known_cause(error))


def known_cause(error: tf.errors.OpError, task_index: int | None = None) -> str:
    """What the error's text shows about its cause, or "" when it shows nothing certain.

    TensorFlow's distributed runtime answers "aborted" for several unrelated things; only its own
    words tell them apart, so a cause is named only when those words are there.
    """
    text = error.message or ""
    if delivered_twice(error):
        return ("the PS's TensorFlow server received the same call twice (gRPC delivered a retried call); "
                "the call may or may not have taken effect")
    if "handle is not found" in text or "just restarted" in text:
        flag = "this worker's --task_index" if task_index is None else f"--task_index {task_index}"
        return ("the PS's TensorFlow server no longer holds this process's session: the PS was restarted, or "
                f"another process started with {flag} took its place")
    if "incarnation" in text:
        return "a TensorFlow server in the cluster was restarted (its incarnation changed)"
    return ""


# --- TensorFlow's own formatting of an error, made linear ----------------------------------------
# `Session.run` passes every error's text through error_interpolation.parse_message, whose pattern
# `(?P<sep>.*?)(?P<tag>{{type name}})` rescans the rest of the text from every position that holds no
# tag: quadratic in the text's length. A refused duplicate call carries the whole request, tensors
# included, in its text; measured on this machine 20 KB took 4 s, 80 KB 94 s, and a worker spun for
# minutes on one. The same parse in one pass: the tags found by their own pattern (the leftmost match
# from each position, as the lazy prefix finds it), the text between them kept as it was.
_TAG = re.compile(error_interpolation._TAG_REGEX)  # noqa: SLF001 (TensorFlow's own tag pattern, reused)


def parse_message(message: str):
    """error_interpolation.parse_message's result, in time linear in the message's length."""
    parts, func_tags, node_tags, pos = [], [], [], 0
    for match in _TAG.finditer(message):
        tag = error_interpolation._ParseTag(match.group("type"), match.group("name"))  # noqa: SLF001
        between = message[pos:match.start()]
        if tag.type == "function_node":
            parts.append(between)
            func_tags.append(tag)
        else:
            parts.append(between + match.group())
            node_tags.append(tag)
        pos = match.end()
    parts.append(message[pos:])
    return "".join(parts), func_tags, node_tags


TENSORFLOW_PARSE = error_interpolation.parse_message  # the original, kept for the test that compares the two
error_interpolation.parse_message = parse_message  # every later session.run error goes through it

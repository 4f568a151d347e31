"""One digest of a module's state, for the tests that check a model is never modified."""
import hashlib

from torch import nn


def state_hash(module: nn.Module) -> str:
    """SHA-256 over every state-dict entry's name and bytes, in name order."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode() + v.detach().numpy().tobytes())
    return h.hexdigest()

"""Online selectors: decide per training batch which samples the loss is computed on.

``create_selector("prototype", ...)`` (CheXficient) or ``create_selector("learnability", ...)`` (JEST /
RHO-LOSS); see docs/curation-online.md for the schedule and how a trainer calls them.
"""

from rfm_curation.selectors.base import (
    Phase,
    Selector,
    create_selector,
    list_selectors,
    register_selector,
    selectors,
)
from rfm_curation.selectors.learnability import LearnabilitySelector
from rfm_curation.selectors.prototype import PrototypeSelector, ema_update, joint_embedding, sinkhorn
from rfm_curation.selectors.state import load_state, restore_selector, save_state, state_from_bytes, state_to_bytes

__all__ = [
    "LearnabilitySelector",
    "Phase",
    "PrototypeSelector",
    "Selector",
    "create_selector",
    "ema_update",
    "joint_embedding",
    "list_selectors",
    "load_state",
    "register_selector",
    "restore_selector",
    "save_state",
    "selectors",
    "sinkhorn",
    "state_from_bytes",
    "state_to_bytes",
]

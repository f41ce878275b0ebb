"""Queries that talk back: Ask&Confirm (:mod:`.askconfirm`, the system proposes details, the user confirms or
rejects them) and relevance feedback (:mod:`.feedback`, the user marks results good / bad; Rocchio). See
``docs/interactive.md``."""
from __future__ import annotations

from .askconfirm import AskConfirm, AskConfirmConfig, DetailBank, Proposal, check_answers, propose, refine_query
from .feedback import RocchioConfig, check_feedback, feedback_search, feedback_vector, rocchio
from .vocab import COCO_CATEGORIES, default_vocabulary, load_vocabulary

__all__ = ["AskConfirm", "AskConfirmConfig", "DetailBank", "Proposal", "check_answers", "propose", "refine_query",
           "RocchioConfig", "check_feedback", "feedback_search", "feedback_vector", "rocchio", "COCO_CATEGORIES",
           "default_vocabulary", "load_vocabulary"]

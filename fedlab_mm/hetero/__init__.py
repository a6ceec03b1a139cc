"""Heterogeneous clients: FedMosaic's RELA and Co-LoRA's dimension-invariant adapters.

FedMosaic / Co-LoRA ("Not All Clients Are Equal", arXiv 2506.11024; ICLR 2026 as "Co-LoRA")
personalises federated learning when clients differ in both their tasks and their models:

- **Co-LoRA layers** (:class:`CoLoRALinear`), for a batch of row vectors ``x``:
  ``y = x W0^T + s [g (x A^T P1 + Q1) B^T + (1 - g) (x A^T P2 + Q2) B^T]`` with ``A (r, d_in)``
  row-orthonormal and ``B (d_out, r)`` column-orthonormal, both frozen, and small
  ``P (r, r)``, ``Q (1, r)`` that train. ``P`` and ``Q`` have the same shape whatever the
  layer's width, so models of different sizes can average them. Branch 1 holds what the
  server sent (frozen locally), branch 2 the client's own (trained), and a gate
  ``g = sigmoid(x . w)`` mixes them (with noise while training). ``P = Q = 0`` at the start:
  the adapter is a no-op.
- Other adapted layers carry a plain dual LoRA (:class:`DualLoRALinear`), shared only among
  clients with the same architecture.
- **RELA** (:class:`RELA`): each client sends a *task vector*, the last-layer gradient of a
  small frozen anchor model on its data (truncated, optionally noised); the server's cosine
  similarity of those vectors decides whose adapters each client receives:
  ``w_ij = softmax_{j != i}(S_ij / T)``.

Following the authors' code (MECHANISMS.md section 4), except where stated [R]:

- the model family is an MLP over the frozen public image tower's 64-d features
  (:mod:`fedlab_mm.pretrained`), pretrained on the public digits, in three sizes
  (:data:`SIZES`); the frozen head is the pretrained 10-way digit classifier, so every task
  is learned through the adapters alone [R];
- two Co-LoRA *block* layers per model, matched across sizes by position: the first hidden
  layer (it reads the tower's features, the same space at every size) and the head (it writes
  the ten logits, the same space at every size); the paper uses four blocks inside an LLM [R];
- **A/B alignment, simplified** [R] (:func:`align_frames`): the smallest model's frames are the
  top-``r`` singular directions of its frozen block weights; a larger model takes its own
  top directions, rotated (orthogonal Procrustes) so that its codes on the public digits match
  the smallest model's, and a scalar gain per side that equalises their spread; shared spaces
  keep the smallest model's frame. The paper fits ``A`` with an MSE plus orthogonality loss and
  maps ``B`` with a CCA-style whitening. Another alignment can be tried without editing the
  kit: ``align=`` of :class:`HeteroNet`, :meth:`HeteroSpec.build` and :func:`pq_transfer`;
- the task vector is the closed-form gradient of the cross-entropy with respect to the anchor's
  head weight, keeping the first 40% of its columns. The authors' code takes the gradient of
  the layer *before* the head (an LLM's last MLP down-projection, the error sent back through
  the frozen head and final norm) and keeps the first 40% of its *rows*;
  ``task_vector(layer="penultimate")`` computes that form on the kit's anchor. The default
  stays the head's: notebook 08 measures group recovery with both, and neither is clearly
  better (mean ARI 1.00 and 0.97 without noise, 0.81 and 0.90 at noise of once the RMS).

Measured (notebook 08, README): the similarity recovers the task groups, but in this small
setting sharing does not beat local training: P/Q moved between independently pretrained sizes
keep only part of what they do in their own size (:func:`pq_transfer`), and the persistent
local branch learns around the global one. On its own (:func:`rela_alone`: one size, three
tasks that conflict on every digit, five clients a task), RELA at T 0.05 serves a mix well
above uniform and near the oracle from 25 samples a client on; after local training that gain
is mostly gone (README).

Modules, one concept each: ``base`` (the pretrained MLP), ``colora`` (the adapter layers),
``frames`` (their aligned A/B frames), ``alone`` (RELA on its own, with the oracle),
``model`` (:class:`HeteroSpec`, :data:`SIZES`, :class:`HeteroNet`), ``tasks`` (the
conflicting tasks), ``rela`` (task vectors and the server), ``probes`` (diagnostics of a
run) and ``recipes`` (:func:`mosaic`, :func:`local_only` and :data:`VARIANTS`, the
comparisons notebook 08 and ``benchmarks/hetero.py`` share).
"""

from .alone import ACROSS, ALONE, ORACLE, across_sizes, rela_alone
from .base import FAMILIES, grow
from .colora import CoLoRALinear, DualLoRALinear
from .frames import align_frames, fitted_frames, frame_agreement
from .model import SIZES, HeteroNet, HeteroSpec, family_sizes, tower_features
from .probes import accuracy_by_size, forced_gate, pq_transfer, served_accuracy, without_branch
from .recipes import LOCAL, PAIRS, VARIANTS, local_only, mosaic
from .rela import (
    DEAD_COLUMN,
    RELA,
    TASK_LAYERS,
    TaskVector,
    client_task_vectors,
    group_recovery,
    rela_weights,
    relevance,
    task_groups,
    task_vector,
)
from .tasks import ALL_TASKS, CONFLICTING, TASKS, task_clients, task_labels

__all__ = [
    "ACROSS",
    "ALONE",
    "ALL_TASKS",
    "CONFLICTING",
    "DEAD_COLUMN",
    "FAMILIES",
    "LOCAL",
    "ORACLE",
    "PAIRS",
    "RELA",
    "SIZES",
    "TASKS",
    "TASK_LAYERS",
    "VARIANTS",
    "CoLoRALinear",
    "DualLoRALinear",
    "HeteroNet",
    "HeteroSpec",
    "TaskVector",
    "accuracy_by_size",
    "across_sizes",
    "align_frames",
    "client_task_vectors",
    "family_sizes",
    "fitted_frames",
    "forced_gate",
    "frame_agreement",
    "grow",
    "group_recovery",
    "local_only",
    "mosaic",
    "pq_transfer",
    "served_accuracy",
    "rela_alone",
    "rela_weights",
    "relevance",
    "task_clients",
    "task_groups",
    "task_labels",
    "task_vector",
    "tower_features",
    "without_branch",
]

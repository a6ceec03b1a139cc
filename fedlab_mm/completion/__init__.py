"""FedMVP's modality completion: fill in missing modalities on the client before training.

FedMVP (Che et al., ECML-PKDD 2024, arXiv 2406.11048) completes a sample that lacks its image
or its text with large frozen pretrained generators (captioning, text-to-image) before local
training. The kit offers that idea next to simpler baselines, all behind one interface: a
:class:`Completion` is fitted on one client's training split and then fills what
``present`` marks missing, in that client's train and test splits. Filled values are
recorded in ``dataset.filled``; ``present`` keeps saying what is real. Models read
``dataset.available = present | filled``.

=============  ===========================================  =================================
strategy       needs                                        leaks / risks
=============  ===========================================  =================================
``mask``       nothing (the engine's default)               nothing
``zero``       nothing: zeros read as data (a baseline)     the model cannot tell "missing"
``mean``       the client's own samples of that modality    nothing beyond the client
``knn``        local samples that have the missing          nothing beyond the client; copies
               modality and share one with the query        real local values into new rows
``regression`` local complete pairs (a ridge map from       nothing beyond the client
               each present modality to the missing one)
``frozen``     frozen models built from public data         nothing: the models are public
               (:mod:`fedlab_mm.pretrained`); digits only        and applied locally; but their
                                                            mistakes become training data
``Frozen(      a real CLIP whose features the data are      as ``frozen``; the modality-gap
tower=...)``   (:class:`~.clip_fill.CLIPFill`)               shift uses local means
=============  ===========================================  =================================

Everything here is local to one client: no completion step sends anything to the server.

FedMVP's two knowledge-transfer losses, MCM and RAM, are in :mod:`fedlab_mm.mcm_ram`.

Modules: ``base`` (the interface, mask, zero, mean), ``local`` (kNN, regression),
``frozen_models`` (the pretrained fill), ``clip_fill`` (the same in a real CLIP's space) and
``apply`` (by name, on every client, views).
"""

from .apply import STRATEGIES, complete, make, views
from .base import Completion, Mask, Mean, Zero
from .clip_fill import CLIPFill
from .frozen_models import Frozen
from .local import KNN, Regression

__all__ = [
    "CLIPFill",
    "KNN",
    "STRATEGIES",
    "Completion",
    "Frozen",
    "Mask",
    "Mean",
    "Regression",
    "Zero",
    "complete",
    "make",
    "views",
]

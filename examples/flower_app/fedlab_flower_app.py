"""fedlab_mm on a Flower runtime: the module-level ``server`` and ``client`` apps that
``flwr run`` loads (see ``pyproject.toml``).

Every node rebuilds the same data set and partition from the seed and takes the client whose
index is its ``partition-id``; on a real deployment each SuperNode would load its own private
data here instead. ``NUM_CLIENTS`` must equal the number of SuperNodes.
"""

import fedlab_mm as fm
from fedlab_mm.federated import FedAvg, LocalTrainer, Recipe
from fedlab_mm.flower import client_app, server_app

NUM_CLIENTS, ROUNDS, SEED = 10, 3, 0

ds = fm.data.synthetic(n_samples=2000, seed=SEED)
clients = fm.partition.dirichlet(ds, NUM_CLIENTS, alpha=0.5, seed=SEED).clients(ds, seed=SEED)
recipe = Recipe(fm.models.ModelSpec.from_dataset(ds, d=32, hidden=64), LocalTrainer(), FedAvg())

client = client_app(clients, recipe, seed=SEED)
server = server_app(recipe, NUM_CLIENTS, ROUNDS, seed=SEED, out="flower_results")

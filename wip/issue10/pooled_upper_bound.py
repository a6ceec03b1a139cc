import sys, time, torch, math
torch.set_num_threads(1)
import fedlab_mm as fm
from fedlab_mm import hetero as H
from fedlab_mm.partition import ClientData
E = fm.federated
ds = H.tower_features(fm.data.digits(5000, modalities=("image",), progress=False))
ts = int(sys.argv[1]); epochs = int(sys.argv[2])
clients, specs, groups = H.task_clients(ds, sizes=("small","medium","large"), alpha=5.0, train_size=ts, seed=0)
# pooled: each client trains on the union of its group's training data
pooled = []
for i, c in enumerate(clients):
    same = [d.train for j, d in enumerate(clients) if groups[j] == groups[i]]
    import torch as T
    mods = {"image": T.cat([d.modalities["image"] for d in same])}
    y = T.cat([d.y for d in same])
    train = c.train.replace(modalities=mods, y=y, present=T.ones(len(y), 1, dtype=T.bool), labeled=T.ones(len(y), dtype=T.bool), filled=T.zeros(len(y), 1, dtype=T.bool), meta={})
    pooled.append(ClientData(c.client_id, train, c.test))
for name, cl, r in [("local", clients, H.local_only(specs, epochs=epochs)), ("pooled-local", pooled, H.local_only(specs, epochs=epochs)), ("mosaic", clients, H.mosaic(specs, epochs=epochs))]:
    sim = E.Simulation(cl, *r, seed=0, progress=False, eval_every=10); h = sim.run(10)
    df = h.df.query("split=='personal' and metric=='accuracy' and round==10")
    per = {}
    for _, row in df.iterrows(): per.setdefault(specs[int(row.client)].label, []).append(row.value)
    print(ts, epochs, name, {k: round(sum(v)/len(v),3) for k,v in per.items()}, round(df.value.mean(),3), flush=True)

import sys, time, torch, math
torch.set_num_threads(1)
import fedlab_mm as fm
from fedlab_mm import hetero as H
E = fm.federated
ds = H.tower_features(fm.data.digits(5000, modalities=("image",), progress=False))
ts = int(sys.argv[1]); epochs = int(sys.argv[2]); seed = int(sys.argv[3])
clients, specs, groups = H.task_clients(ds, sizes=("small","medium","large"), alpha=5.0, train_size=ts, seed=seed)
def run(name, r):
    sim = E.Simulation(clients, *r, seed=seed, progress=False, eval_every=10); h = sim.run(10)
    df = h.df.query("split=='personal' and metric=='accuracy' and round==10")
    per = {}
    for _, row in df.iterrows(): per.setdefault(specs[int(row.client)].label, []).append(row.value)
    print(seed, ts, epochs, name, {k: round(sum(v)/len(v),3) for k,v in per.items()}, round(df.value.mean(),3), flush=True)
    return sim
run("local", H.local_only(specs, epochs=epochs))
for T in [0.1, 0.05]:
    s = run(f"mosaic T{T}", H.mosaic(specs, temperature=T, epochs=epochs))
run("mosaic T0.05 noPQ", H.mosaic(specs, temperature=0.05, share_pq=False, epochs=epochs))
run("uniform", H.mosaic(specs, temperature=math.inf, epochs=epochs))
print(s.strategy.weights.numpy().round(2))

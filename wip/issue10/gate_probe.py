import sys, torch, math
torch.set_num_threads(1)
import fedlab_mm as fm
from fedlab_mm import hetero as H
E = fm.federated
ds = H.tower_features(fm.data.digits(5000, modalities=("image",), progress=False))
seed = int(sys.argv[1])
clients, specs, groups = H.task_clients(ds, sizes=("small","medium","large")*2, alpha=5.0, train_size=50, seed=seed)
r = H.mosaic(specs, temperature=0.05, epochs=5)
sim = E.Simulation(clients, *r, seed=seed, progress=False, eval_every=10); sim.run(10)
def with_gate(model, value):
    saved = {}
    for m in model.modules():
        if isinstance(m, H._Gate):
            saved[m] = m.forward
            m.forward = (lambda x, v=value: torch.full((len(x), 1), v))
    return saved
res = {"learned": [], "global only": [], "local only": [], "half": []}
gates = []
for c in sim.clients:
    model = c.model
    model.load_state_dict(sim.strategy.message(c.client_id, {}), strict=False)  # latest served global branch
    res["learned"].append(E.evaluate(model, c.data.test)["accuracy"])
    for name, v in (("global only", 1.0), ("local only", 0.0), ("half", 0.5)):
        saved = with_gate(model, v)
        res[name].append(E.evaluate(model, c.data.test)["accuracy"])
        for m, f in saved.items(): m.forward = f
    model.eval()
    with torch.no_grad():
        x = c.data.test.modalities["image"]
        g = model.layers[0].gate(x).mean().item()
    gates.append(round(g, 2))
print(seed, {k: round(sum(v)/len(v), 3) for k, v in res.items()}, "mean gate layer0", gates)

import torch, numpy as np
torch.set_num_threads(1)
import fedlab_mm as fm
from fedlab_mm import hetero as H
from sklearn.metrics import adjusted_rand_score
from sklearn.cluster import AgglomerativeClustering
ds = H.tower_features(fm.data.digits(5000, modalities=("image",), progress=False))
def ari(S, groups):
    D = (1 - S.numpy()).clip(0)
    lab = AgglomerativeClustering(n_clusters=3, metric="precomputed", linkage="average").fit_predict(D)
    return adjusted_rand_score(groups, lab)
rms = []
for alpha in [5.0]:
  for noise in [0.3, 1.0, 3.0]:
    scores = []
    for seed in [0, 1, 2]:
        clients, specs, groups = H.task_clients(ds, sizes=("small","medium","large"), alpha=alpha, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        vs = []
        for c in clients:
            g = None
            for rnd in range(5):  # EMA over 5 rounds of 64-sample batches
                idx = torch.randperm(len(c.train), generator=gen)[:64]
                new = H.task_vector(c.train.modalities["image"][idx], c.train.y[idx]) 
                new = new + noise * torch.randn(new.shape, generator=gen)
                g = new if g is None else 0.5 * (new + g)
            vs.append(g)
            if noise == 0: rms.append(float(new.pow(2).mean().sqrt()))
        scores.append(ari(H.relevance(torch.stack(vs)), groups))
    print(f"alpha {alpha:6} noise {noise:6}: ARI {np.mean(scores):.2f} ({', '.join(f'{s:.2f}' for s in scores)})", flush=True)
print("task vector RMS", np.mean(rms))

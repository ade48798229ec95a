"""``rtf-evaluate embed``: UMAP and t-SNE maps of the fingerprints and the physics features, and
their silhouette by class."""

from __future__ import annotations

import warnings

from tqdm import tqdm

from training.evaluate import baselines, plots
from training.evaluate.context import FULL, Context
from training.evaluate.report import num, table, write_section


def run(ctx: Context) -> str:
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    level = ctx.level("embed")
    idx = ctx.select("embed", level)
    y = ctx.labels(level)[idx].astype(str)
    inputs = {f"{name} fingerprint": ctx.encoded(j, FULL).vectors[idx] for j, (name, _) in enumerate(ctx.encoders)}
    inputs["physics features"] = baselines.impute_standardize(ctx.features(FULL)[idx])
    n = len(idx)
    rows, data = [], {}
    for method in ("umap", "tsne"):
        panels = {}
        for name, x in tqdm(inputs.items(), desc=f"embed: {method}"):
            if method == "umap":
                import umap

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    reducer = umap.UMAP(n_neighbors=min(15, n - 1), metric="cosine", random_state=ctx.args.seed)
                    panels[name] = reducer.fit_transform(x)
            else:
                perp = float(min(30.0, max(2.0, (n - 1) / 3)))
                panels[name] = TSNE(
                    perplexity=perp, metric="cosine", init="pca", random_state=ctx.args.seed
                ).fit_transform(x)
        path = plots.embeddings(
            panels, y, ctx.out / f"embed_{method}.png", f"{method.upper()} coloured by {level} class"
        )
        for name in panels:
            data.setdefault(name, {})[method] = path.name
    for name, x in inputs.items():
        sil = float(silhouette_score(x, y, metric="cosine")) if len(set(y)) > 1 else float("nan")
        data[name]["silhouette_cosine"] = sil
        rows.append([name, x.shape[1], num(sil)])
    md = "\n\n".join(
        [
            "## Embeddings",
            ctx.set_line(idx, level, "embed"),
            "UMAP (cosine, 15 neighbours) and t-SNE (cosine, PCA init) of the fingerprints, side by side with the "
            "standardised physics features. Silhouette: cosine, by class, in the original space (higher = classes "
            "better separated).",
            table(["input", "dim", "silhouette (cosine)"], rows),
            "![umap](embed_umap.png)",
            "![tsne](embed_tsne.png)",
        ]
    )
    return write_section(ctx, "embed", md, {"inputs": data, "n": n})

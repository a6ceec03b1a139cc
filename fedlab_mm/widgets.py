"""Slider panels. Each panel wraps pure functions (testable without a display) and redraws
its figure in place.

The partition explorer keeps one matplotlib figure, updates its artists' data on every
change and pushes the rendered PNG into an ``ipywidgets.Image``: no flicker, no growing
output, and it works in any Jupyter front end.

:func:`sweep_slider` is the small one: a slider over a sweep computed beforehand, whose
``draw(value)`` redraws the chosen point into an output area under it.
"""

from __future__ import annotations

import io
import time

import numpy as np

from . import partition as P
from .data import MultimodalDataset
from .partition.skew import js_distance
from .viz import PALETTE

__all__ = [
    "SCHEMES",
    "build_partition",
    "PartitionExplorer",
    "partition_explorer",
    "SweepSlider",
    "sweep_slider",
]

SCHEMES = ("iid", "dirichlet", "shards", "pathological", "quantity_skew")


def build_partition(
    dataset: MultimodalDataset,
    scheme: str = "dirichlet",
    num_clients: int = 20,
    alpha: float = 0.5,
    classes_per_client: int = 2,
    sigma: float = 1.0,
    missing: dict[str, float] | None = None,
    labeled_fraction: float = 1.0,
    seed: int = 0,
) -> P.Partition:
    """The partition a panel's settings describe (a pure function of its arguments).

    ``missing`` maps modality -> independent missing rate; ``labeled_fraction`` < 1 applies
    :func:`fedlab_mm.partition.scarce_labels`.
    """
    min_size = max(1, min(10, len(dataset) // (2 * num_clients)))
    if scheme == "iid":
        part = P.iid(dataset, num_clients, seed=seed)
    elif scheme == "dirichlet":
        part = P.dirichlet(dataset, num_clients, alpha=alpha, min_size=min_size, seed=seed)
    elif scheme == "shards":
        part = P.shards(dataset, num_clients, shards_per_client=classes_per_client, seed=seed)
    elif scheme == "pathological":
        part = P.pathological(dataset, num_clients, classes_per_client, seed=seed)
    elif scheme == "quantity_skew":
        part = P.quantity_skew(dataset, num_clients, sigma=sigma, min_size=min_size, seed=seed)
    else:
        raise ValueError(f"scheme={scheme!r} must be one of {SCHEMES}")
    if dataset.M >= 2:
        part = P.missing_modalities(part, dataset, rate=dict(missing or {}), seed=seed)
    if labeled_fraction < 1.0:
        part = P.scarce_labels(part, labeled_fraction, seed=seed)
    return part


class PartitionExplorer:
    """Sliders and dropdowns over :func:`build_partition`, with four live panels.

    Panels: each client's class mix (heatmap, % of the client), client sizes, modality
    availability, and per-client label skew (JS distance) with the labelled fraction.
    ``timings`` keeps the seconds each redraw took (partition + figure + PNG).

    Examples
    --------
    >>> explorer = PartitionExplorer(fm.data.synthetic(2000))   # doctest: +SKIP
    >>> explorer.widget                                         # doctest: +SKIP
    """

    def __init__(
        self, dataset: MultimodalDataset, num_clients: int = 20, seed: int = 0, dpi: int = 72
    ) -> None:
        import ipywidgets as w

        self.dataset, self.seed, self.dpi = dataset, seed, dpi
        self.timings: list[float] = []
        c = dataset.num_classes

        def control(kind, description, **kwargs):
            return kind(
                description=description,
                style={"description_width": "150px"},
                layout=w.Layout(width="420px"),
                **kwargs,
            )

        self.controls = {
            "scheme": control(w.Dropdown, "scheme", options=SCHEMES, value="dirichlet"),
            "num_clients": control(
                w.IntSlider, "clients", value=num_clients, min=2, max=min(100, len(dataset) // 2)
            ),
            "alpha": control(
                w.FloatLogSlider, "alpha (Dirichlet)", value=0.5, base=10, min=-3, max=3, step=0.1
            ),
            "classes_per_client": control(w.IntSlider, "classes/shards", value=2, min=1, max=c),
            "sigma": control(
                w.FloatSlider, "sigma (quantity)", value=1.0, min=0.0, max=3.0, step=0.1
            ),
            "labeled_fraction": control(
                w.FloatSlider, "labelled fraction", value=1.0, min=0.0, max=1.0, step=0.05
            ),
        }
        self.missing = {
            name: control(w.FloatSlider, f"missing {name}", value=0.0, min=0.0, max=0.9, step=0.05)
            for name in (dataset.names if dataset.M >= 2 else [])
        }
        self.image = w.Image(format="png")
        self.status = w.HTML()
        for ctrl in [*self.controls.values(), *self.missing.values()]:
            ctrl.observe(lambda _change: self.redraw(), names="value")
        self._build_figure()
        self.widget = w.HBox(
            [w.VBox([*self.controls.values(), *self.missing.values(), self.status]), self.image]
        )
        self.redraw()

    # ------------------------------------------------------------------ state
    def settings(self) -> dict:
        """The current control values, as keyword arguments of :func:`build_partition`."""
        values = {k: ctrl.value for k, ctrl in self.controls.items()}
        values["missing"] = {k: ctrl.value for k, ctrl in self.missing.items()}
        return values

    def partition(self) -> P.Partition:
        return build_partition(self.dataset, seed=self.seed, **self.settings())

    # ------------------------------------------------------------------ drawing
    def _build_figure(self) -> None:
        from matplotlib.figure import Figure

        ds = self.dataset
        fig = Figure(figsize=(9, 5.6), dpi=self.dpi)
        fig.subplots_adjust(left=0.08, right=0.99, top=0.9, bottom=0.08)
        grid = fig.add_gridspec(3, 2, height_ratios=[2.2, 1, 1.2], hspace=0.8, wspace=0.22)
        ax_mix = fig.add_subplot(grid[0, :])
        ax_size = fig.add_subplot(grid[1, 0])
        ax_avail = fig.add_subplot(grid[1, 1])
        ax_skew = fig.add_subplot(grid[2, :])
        self._mix = ax_mix.imshow(
            np.zeros((ds.num_classes, 2)),
            aspect="auto",
            cmap="viridis",
            vmin=0,
            vmax=100,
            interpolation="nearest",
        )
        bar = fig.colorbar(self._mix, ax=ax_mix, label="% of client", pad=0.01)
        bar.set_ticks([0, 50, 100])
        ax_mix.set_yticks(range(ds.num_classes))
        ax_mix.set_yticklabels(ds.classes, fontsize=7)
        ax_mix.set_ylabel("class")
        self._size = ax_size.stairs(np.zeros(2), np.arange(3) - 0.5, fill=True, color=PALETTE[0])
        ax_size.set_ylabel("samples")
        ax_size.set_title("client size", fontsize=10)
        names = ds.names if ds.M >= 2 else []
        self._avail = ax_avail.imshow(
            np.ones((max(len(names), 1), 2)),
            aspect="auto",
            cmap="cividis",
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        ax_avail.set_yticks(range(len(names)))
        ax_avail.set_yticklabels(names, fontsize=8)
        ax_avail.set_title("share of samples with each modality (dark = missing)", fontsize=10)
        (self._js,) = ax_skew.step(
            [], [], where="mid", color=PALETTE[5], label="JS distance to global label mix"
        )
        (self._lab,) = ax_skew.step(
            [], [], where="mid", color=PALETTE[2], linestyle="--", label="labelled fraction"
        )
        ax_skew.set_ylim(-0.02, 1.05)
        ax_skew.set_yticks([0, 0.5, 1])
        ax_skew.set_ylabel("0 .. 1")
        ax_skew.legend(loc="upper right", fontsize=8, ncol=2)
        for ax in (ax_mix, ax_size, ax_avail, ax_skew):
            ax.set_xlabel("client", fontsize=9)
        self.fig, self.axes = fig, (ax_mix, ax_size, ax_avail, ax_skew)

    def render(self, part: P.Partition) -> bytes:
        """Update every panel for ``part`` and return the figure as PNG bytes."""
        ax_mix, ax_size, ax_avail, ax_skew = self.axes
        y = self.dataset.y.numpy()
        counts = part.label_counts(y, self.dataset.num_classes)  # (N, C)
        n = len(counts)
        share = 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1)
        edges = (-0.5, n - 0.5)
        self._mix.set_data(share.T)
        self._mix.set_extent((*edges, self.dataset.num_classes - 0.5, -0.5))
        global_mix = np.bincount(y, minlength=self.dataset.num_classes)
        js = js_distance(counts, global_mix[None, :])
        ax_mix.set_title(
            f"{part!r}\nclass mix per client (mean JS distance {js.mean():.2f})", fontsize=10
        )
        sizes = part.sizes
        self._size.set_data(sizes, np.arange(n + 1) - 0.5)
        ax_size.set_ylim(0, sizes.max() * 1.1)
        if part.present is not None:
            avail = np.stack([p.mean(0) if len(p) else np.zeros(p.shape[1]) for p in part.present])
            self._avail.set_data(avail.T)
            self._avail.set_extent((*edges, len(part.modalities) - 0.5, -0.5))
        else:
            self._avail.set_extent((*edges, 0.5, -0.5))
        labeled = (
            np.array([m.mean() for m in part.labeled]) if part.labeled is not None else np.ones(n)
        )
        clients = np.arange(n)
        self._js.set_data(clients, js)
        self._lab.set_data(clients, labeled)
        ax_skew.set_title("label skew and label scarcity per client", fontsize=10)
        step = max(1, int(np.ceil(n / 8)))  # few tick labels: text is most of the drawing time
        for ax in self.axes:
            ax.set_xlim(*edges)
            ax.set_xticks(np.arange(0, n, step))
        return self._png()

    def _png(self) -> bytes:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from PIL import Image

        canvas = FigureCanvasAgg(self.fig)
        canvas.draw()
        buffer = io.BytesIO()
        rgba = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba())
        rgba.convert("RGB").save(buffer, format="png", compress_level=1)
        return buffer.getvalue()

    def redraw(self) -> None:
        """Rebuild the partition from the controls and refresh the picture."""
        start = time.perf_counter()
        try:
            part = self.partition()
        except ValueError as err:  # e.g. too many clients for the data: say so, keep the plot
            self.status.value = f"<span style='color:#D55E00'>{err}</span>"
            return
        self.image.value = self.render(part)
        self.timings.append(time.perf_counter() - start)
        self.status.value = f"<small>redraw: {1000 * self.timings[-1]:.0f} ms</small>"


def partition_explorer(dataset: MultimodalDataset, num_clients: int = 20, seed: int = 0):
    """Show a :class:`PartitionExplorer` for ``dataset`` and return it (its ``.widget``
    is what Jupyter displays)."""
    return PartitionExplorer(dataset, num_clients=num_clients, seed=seed)


class SweepSlider:
    """A slider over the values of a sweep computed beforehand, and the output it redraws.

    Moving the slider (by hand or ``panel.value = v``) clears the output area and calls
    ``draw(v)`` inside it: what ``draw`` shows or prints lands under the slider, as with
    ``ipywidgets.interact``. A figure ``draw`` leaves open is shown, and a value it returns
    other than ``None`` is displayed. ``drawn`` lists the values drawn so far, in order.
    Build it with :func:`sweep_slider`, which checks the arguments.
    """

    def __init__(self, values: list, draw, name: str, value, description: str) -> None:
        import ipywidgets as w

        self.values, self.draw, self.name = values, draw, name
        self.drawn: list = []
        self.slider = w.SelectionSlider(
            options=values,
            value=value,
            description=description,
            style={"description_width": "initial"},
            layout=w.Layout(width="420px"),
        )
        self.output = w.Output()
        self.widget = w.VBox([self.slider, self.output])
        self.slider.observe(lambda _change: self.redraw(), names="value")
        self.redraw()

    @property
    def value(self):
        """The value the slider is on; setting it moves the slider (and redraws)."""
        return self.slider.value

    @value.setter
    def value(self, value) -> None:
        self.slider.value = _one_of(self.values, value, "value", self.name)

    def redraw(self) -> None:
        """Clear the output area and draw the slider's value into it."""
        from IPython.display import display
        from ipywidgets.widgets.interaction import show_inline_matplotlib_plots

        value = self.slider.value
        show_inline_matplotlib_plots()  # figures the cell left open go above, not in here
        with self.output:
            self.output.clear_output(wait=True)
            result = self.draw(value)
            show_inline_matplotlib_plots()
            if result is not None:
                display(result)
            self.drawn.append(value)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _one_of(values: list, value, argument: str, name: str):
    """``value`` when it is one of ``values``, else a ValueError naming ``argument``."""
    if not any(value == v for v in values):
        raise ValueError(f"{argument}={value!r} is not one of the {name} values {values}")
    return value


def sweep_slider(
    values, draw, *, name: str = "value", value=None, description: str | None = None
) -> SweepSlider:
    """A slider that walks along a sweep computed beforehand and redraws the chosen point.

    ``values`` are the swept parameter's values, in slider order (a list, a tuple, a pandas
    column, or a dict's keys); the results belong to the caller, which looks them up in
    ``draw(value)``. ``draw`` runs once for the starting point (``value``, by default the
    first of ``values``) and again whenever the slider moves; what it plots or prints
    replaces the previous point's. ``name`` is the parameter's name, which labels the slider
    unless ``description`` is given. The cell's result, a :class:`SweepSlider`, displays as
    the slider above its output; ``.slider``, ``.output`` and ``.drawn`` are for tests.

    Examples
    --------
    >>> fractions = [0.05, 0.1, 0.3, 1.0]
    >>> sweep = {f: run(labeled_fraction=f) for f in fractions}      # doctest: +SKIP
    >>> fm.widgets.sweep_slider(fractions, lambda f: print(sweep[f]),
    ...                         name="labeled_fraction", value=0.1)  # doctest: +SKIP
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} must be a non-empty string")
    if isinstance(values, (str, bytes)):
        raise ValueError(f"values={values!r} must be a sequence of parameter values, not a string")
    try:
        options = list(values)
    except TypeError:
        raise ValueError(f"values={values!r} must be a sequence of parameter values") from None
    if not options:
        raise ValueError(f"values={values!r} is empty: a {name} slider needs at least one value")
    for i, v in enumerate(options):
        if any(v == u for u in options[:i]):
            raise ValueError(f"values={options} has {v!r} more than once: each {name} once")
    if not callable(draw):
        raise ValueError(f"draw={draw!r} must be callable as draw({name}), e.g. a function")
    if description is not None and not isinstance(description, str):
        raise ValueError(f"description={description!r} must be a string or None")
    start = options[0] if value is None else _one_of(options, value, "value", name)
    return SweepSlider(options, draw, name, start, description or name)

"""What a run measured: :class:`History`, a tidy table ``(round, client, split, metric, value)``."""

from __future__ import annotations

import json

import pandas as pd

__all__ = ["History"]


class History:
    """Everything a run measured, as tidy rows ``(round, client, split, metric, value)``.

    ``client`` is -1 for server-level rows. Splits: ``personal`` (a client's test split,
    its own model after local training), ``personal_init`` (the same split, the model right
    after the init rule and before local training: FedALA's evaluation point), ``global``
    (a client's test split, the model the server holds for it), ``server_test`` (the
    held-out global test set, the global model), ``train`` (local training losses) and
    ``system`` (bytes and seconds per round).
    """

    COLUMNS = ("round", "client", "split", "metric", "value")

    def __init__(self, records: list | None = None) -> None:
        self.records: list[tuple] = [tuple(r) for r in (records or [])]

    def log(self, rnd: int, client: int, split: str, metric: str, value: float) -> None:
        self.records.append((int(rnd), int(client), split, metric, float(value)))

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=list(self.COLUMNS))

    def curve(self, metric: str = "accuracy", split: str = "server_test") -> pd.Series:
        """Per round: the value (mean over clients for client-level splits)."""
        df = self.df
        rows = df[(df.metric == metric) & (df.split == split)]
        if rows.empty:
            raise ValueError(
                f"no rows for metric={metric!r}, split={split!r}; "
                f"splits logged: {sorted(df.split.unique())}"
            )
        return rows.groupby("round")["value"].mean().rename(f"{split} {metric}")

    def final(self, metric: str = "accuracy", split: str = "server_test") -> float:
        """The last logged value of :meth:`curve`."""
        return float(self.curve(metric, split).iloc[-1])

    def last(self, metric: str = "accuracy", split: str = "server_test", rounds: int = 3) -> float:
        """Mean of :meth:`curve` over the last ``rounds`` logged rounds.

        Under skew FedAvg's accuracy swings from round to round, so a comparison read from
        the final round alone can order two methods either way; the mean over the last few
        rounds (and then over seeds) is what the notebooks compare.
        """
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds={rounds!r} must be a positive int (logged rounds to average)")
        return float(self.curve(metric, split).iloc[-rounds:].mean())

    def kilobytes(self) -> dict[str, float]:
        """Mean kilobytes per client and round: ``{"uplink": ..., "downlink": ...}``."""
        system = self.df.query("split == 'system'").groupby("metric").value.mean()
        if "bytes_up" not in system:
            raise ValueError("no system rows logged: run at least one round")
        per_client = system["clients"] * 1e3
        return {
            "uplink": system["bytes_up"] / per_client,
            "downlink": system["bytes_down"] / per_client,
        }

    def to_json(self) -> str:
        return json.dumps({"columns": self.COLUMNS, "records": self.records})

    @classmethod
    def from_json(cls, text: str) -> History:
        return cls(json.loads(text)["records"])

    def __eq__(self, other) -> bool:
        """Equal when every row matches, except wall-clock ``seconds`` (never reproducible)."""
        if not isinstance(other, History):
            return NotImplemented
        keep = lambda rows: [r for r in rows if r[3] != "seconds"]  # noqa: E731
        return keep(self.records) == keep(other.records)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        rounds = max((r[0] for r in self.records), default=0)
        return f"History({len(self.records)} rows, {rounds} rounds)"

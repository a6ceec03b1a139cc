import pytest
import torch
from torch import nn

from fedlab_mm.data import captions
from fedlab_mm.models import lora


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * 6 * 6, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.fc(self.flat(torch.relu(self.conv(x))))))


def tiny(seed=0):
    torch.manual_seed(seed)
    return Tiny()


def test_targets_are_read_off_the_model_in_order():
    assert lora.layer_targets(tiny()) == ["conv", "fc", "out"]
    assert lora.layer_targets(tiny(), kinds=(nn.Linear,)) == ["fc", "out"]


@pytest.mark.parametrize("targets", [["conv"], ["fc", "out"], ["conv", "fc", "out"]])
def test_a_zero_initialised_adapter_changes_nothing_and_only_adapters_train(targets):
    x = torch.randn(5, 1, 6, 6)
    base = tiny()
    before = base(x)
    adapted = lora.add_lora(tiny(), targets, rank=2)
    torch.testing.assert_close(adapted(x), before)
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all(lora.is_adapter(n) for n in trainable)
    assert len(trainable) == 2 * len(targets)  # one A and one B per layer
    assert {lora.layer_of(k) for k in lora.adapter_state(adapted)} == set(targets)
    # after a step the adapter acts
    adapted(x).sum().backward()
    with torch.no_grad():
        for p in adapted.parameters():
            if p.requires_grad:
                p -= 0.5 * p.grad
    assert not torch.allclose(adapted(x), before)


def test_bad_lora_arguments_are_refused():
    with pytest.raises(ValueError, match="rank"):
        lora.add_lora(tiny(), ["fc"], rank=0)
    with pytest.raises(ValueError, match="scale"):
        lora.add_lora(tiny(), ["fc"], scale=float("nan"))
    with pytest.raises(ValueError, match="unknown"):
        lora.add_lora(tiny(), ["fc", "nope"])
    with pytest.raises(ValueError, match="not an adapter"):
        lora.layer_of("fc.weight")


def test_attention_targets_find_bert_query_and_value():
    _, model = captions.load_text_encoder()
    found = lora.attention_targets(model)
    assert len(found) == 2 * model.config.num_hidden_layers
    assert all(name.split(".")[-1] in ("query", "value") for name in found)
    with pytest.raises(ValueError, match="no attention block"):
        lora.attention_targets(tiny())

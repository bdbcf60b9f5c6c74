"""PyTorch's side of the CPU benchmarks bench/engine.ts (the training step) and bench/train.ts (the Trainer's steps on
MRPC): the same steps on the weights and the batches finetune trains on, in the same number of threads, served to
bench/torch_baseline.ts so that the two sides' steps alternate and a slower machine slows both alike.
usage: python3 bench/torch_step.py WORK_DIR THREADS
WORK_DIR holds config.json and model.safetensors (finetune's save_pretrained) and settings.json (the optimizer's
learning rate and weight decay, the Trainer's clipping norm or null, the linear schedule's steps or null, whether the
forward runs under bfloat16 autocast). The first line printed describes this torch; then each request line read, a
JSON object, gets one JSON line back:
{"op": "eval", "batch": B} -> {"loss": evaluation-mode loss on B}; {"op": "steps", "batches": [B...], "count": N}
-> {"ms": time of N training steps, step i on batch i modulo their number}.

The model is transformers' BertForSequenceClassification as its eager attention computes it, written out in torch
modules of the same names, so that the checkpoint loads unchanged: a CPU machine without network can install torch
from its distribution, not transformers. The evaluation-mode loss, printed by both sides, shows that the two models
are the same."""
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

work, threads = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(threads)

with open(os.path.join(work, "config.json")) as f:
    config = json.load(f)
H = config["hidden_size"]
HEADS = config["num_attention_heads"]
EPS = config["layer_norm_eps"]
DROPOUT = config["hidden_dropout_prob"]
ATTENTION_DROPOUT = config["attention_probs_dropout_prob"]


class Embeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(config["vocab_size"], H, padding_idx=config["pad_token_id"])
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], H)
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], H)
        self.LayerNorm = nn.LayerNorm(H, eps=EPS)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, input_ids, token_type_ids):
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x + self.position_embeddings(positions)))


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H)
        self.dropout = nn.Dropout(ATTENTION_DROPOUT)

    def heads(self, x):
        return x.view(x.shape[0], x.shape[1], HEADS, H // HEADS).permute(0, 2, 1, 3)

    def forward(self, x, mask):
        q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(H // HEADS) + mask
        context = torch.matmul(self.dropout(torch.softmax(scores, dim=-1)), v)
        return context.permute(0, 2, 1, 3).reshape(x.shape)


class Residual(nn.Module):
    """BertSelfOutput and BertOutput: dense, dropout, then LayerNorm of the sum with the block's input."""

    def __init__(self, inputs):
        super().__init__()
        self.dense = nn.Linear(inputs, H)
        self.LayerNorm = nn.LayerNorm(H, eps=EPS)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.self = SelfAttention()
        self.output = Residual(H)

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(H, config["intermediate_size"])

    def forward(self, x):
        return nn.functional.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = Attention()
        self.intermediate = Intermediate()
        self.output = Residual(config["intermediate_size"])

    def forward(self, x, mask):
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList(Layer() for _ in range(config["num_hidden_layers"]))


class Pooler(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(H, H)


class Bert(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = Embeddings()
        self.encoder = Encoder()
        self.pooler = Pooler()

    def forward(self, input_ids, token_type_ids, attention_mask):
        mask = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return torch.tanh(self.pooler.dense(x[:, 0]))


class BertForSequenceClassification(nn.Module):
    def __init__(self):
        super().__init__()
        self.bert = Bert()
        self.dropout = nn.Dropout(config.get("classifier_dropout") or DROPOUT)
        self.classifier = nn.Linear(H, len(config.get("id2label", {})) or 2)

    def forward(self, batch):
        pooled = self.bert(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        logits = self.classifier(self.dropout(pooled))
        return nn.functional.cross_entropy(logits, batch["labels"])


def read_safetensors(file):
    """The format is an 8-byte header length, a JSON header of name -> dtype, shape, byte range, then the bytes."""
    with open(file, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    dtypes = {"F32": np.dtype(np.float32), "I64": np.dtype(np.int64)}
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        dtype = dtypes[entry["dtype"]]
        array = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize, offset=8 + header_len + start)
        tensors[name] = torch.from_numpy(array.copy()).reshape(entry["shape"])
    return tensors


model = BertForSequenceClassification()
missing, unexpected = model.load_state_dict(read_safetensors(os.path.join(work, "model.safetensors")), strict=False)
if missing or unexpected:
    sys.exit(f"{work}/model.safetensors does not match the model: missing {missing}, unexpected {unexpected}")
with open(os.path.join(work, "settings.json")) as f:
    settings = json.load(f)
optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
schedule_steps = settings["linear_schedule_steps"]
# transformers' get_linear_schedule_with_warmup without warmup
scheduler = None if schedule_steps is None else \
    torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, (schedule_steps - step) / schedule_steps))


def step(batch):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings["bf16"]):
        loss = model(batch)
    loss.backward()
    if settings["max_grad_norm"] is not None:
        nn.utils.clip_grad_norm_(model.parameters(), settings["max_grad_norm"])
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def answer(reply):
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def tensors(batch):
    return {key: torch.tensor(value) for key, value in batch.items()}


capability = [line.split(":", 1)[1].strip() for line in torch.__config__.show().splitlines() if "CPU capability" in line]
with open("/proc/self/maps") as maps:
    blas = sorted({os.path.dirname(line.split()[-1]) for line in maps if "blas" in os.path.basename(line.split()[-1])})
answer({"torch_version": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_capability": capability[0] if capability else None, "blas": blas})

for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "eval":
        model.eval()
        with torch.no_grad():
            answer({"loss": model(tensors(request["batch"])).item()})
        model.train()
    else:
        batches = [tensors(batch) for batch in request["batches"]]
        start = time.perf_counter()
        for i in range(request["count"]):
            step(batches[i % len(batches)])
        answer({"ms": (time.perf_counter() - start) * 1000})

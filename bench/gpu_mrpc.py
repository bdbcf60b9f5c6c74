"""transformers' side of bench/gpu-mrpc.sh (finetune's side: bench/gpu_mrpc.ts): the Trainer on the model folder and
the batch order that `node dist/bench/gpu_mrpc.js prepare` wrote, batch 8, one epoch, then eval on validation.
The last line printed is the variant's JSON, with the keys gpu_mrpc.ts prints.
usage: python3 bench/gpu_mrpc.py WORK_DIR HUB_DIR fp32|bf16
The GPU machine has no `datasets`: rows come from the parquet files through pyarrow, tokens from the `tokenizers`
library and the model folder's tokenizer.json, padding per batch as DataCollatorWithPadding does.
fp32 is the course's: TF32 stays as PyTorch starts, off for matmuls."""
import json
import os
import sys
import time

import pyarrow.parquet as pq
import torch
import transformers
from tokenizers import Tokenizer
from torch.utils.data import SequentialSampler
from transformers import BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

work, hub, precision = sys.argv[1:4]
if precision not in ("fp32", "bf16"):
    sys.exit(f"precision {precision}: use fp32 or bf16")
print(f"torch {torch.__version__}, transformers {transformers.__version__}", flush=True)

model_dir = os.path.join(work, "model")
with open(os.path.join(work, "order.json")) as f:
    order = json.load(f)
tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
tokenizer.no_padding()
tokenizer.enable_truncation(512)  # truncation=True up to the tokenizer's model_max_length


def rows(split, indices):
    table = pq.read_table(os.path.join(hub, f"datasets/nyu-mll/glue/mrpc/{split}-00000-of-00001.parquet")).to_pydict()
    encodings = tokenizer.encode_batch([(table["sentence1"][i], table["sentence2"][i]) for i in indices])
    return [{"input_ids": e.ids, "token_type_ids": e.type_ids, "attention_mask": e.attention_mask,
             "labels": table["label"][i]} for e, i in zip(encodings, indices)]


def collate(features):
    width = max(len(f["input_ids"]) for f in features)

    def pad(key):
        return torch.tensor([f[key] + [0] * (width - len(f[key])) for f in features])

    return {"input_ids": pad("input_ids"), "token_type_ids": pad("token_type_ids"),
            "attention_mask": pad("attention_mask"), "labels": torch.tensor([f["labels"] for f in features])}


class OrderedTrainer(Trainer):
    """train_dataset is already in order.json's order: it is read front to back."""

    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)


class StepTimer(TrainerCallback):
    """Time to the end of the first step (cuBLAS and allocator warm-up), the only step that synchronises, and the
    host time at the end of every step."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step_s, self.step_ends = time.perf_counter(), None, []

    def on_step_end(self, args, state, control, **kwargs):
        if self.first_step_s is None:
            torch.cuda.synchronize()
            self.first_step_s = time.perf_counter() - self.start
        self.step_ends.append(time.perf_counter())

    def steady_ms_per_step(self):
        t, half = self.step_ends, len(self.step_ends) // 2
        return 1000 * (t[-1] - t[half]) / (len(t) - 1 - half) if len(t) > 1 else 0


train = rows("train", order["train"])
validation = rows("validation", range(order["validation_rows"]))
model, info = BertForSequenceClassification.from_pretrained(model_dir, output_loading_info=True)
if info["missing_keys"] or info["mismatched_keys"]:
    sys.exit(f"{model_dir}: the weights did not all load, so the models differ: {info}")
args = TrainingArguments(os.path.join(work, f"hf_{precision}-output"), per_device_train_batch_size=8,
                         per_device_eval_batch_size=8, num_train_epochs=1, learning_rate=2e-5, seed=42,
                         logging_steps=50, save_strategy="no", report_to="none", disable_tqdm=True,
                         bf16=precision == "bf16")
timer = StepTimer()
trainer = OrderedTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation, data_collator=collate,
                         callbacks=[timer])
result = trainer.train()
metrics = trainer.evaluate()
logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
epoch_s = result.metrics["train_runtime"]
print(json.dumps({
    "samples_per_s": round(len(train) / epoch_s, 1),
    "epoch_s": round(epoch_s, 3),
    "first_step_s": round(timer.first_step_s, 3),
    "eval_s": round(metrics["eval_runtime"], 3),
    "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3),
    "train_loss": result.training_loss,
    "last_logged_loss": logged[-1] if logged else None,
    "eval_loss": metrics["eval_loss"],
    "steps": result.global_step,
    "steady_ms_per_step": round(timer.steady_ms_per_step(), 3),
    "train_tokens": sum(len(r["input_ids"]) for r in train),
    "device": torch.cuda.get_device_name(0),
}))

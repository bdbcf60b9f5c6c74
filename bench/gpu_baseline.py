"""The baseline for bench/gpu_train.ts: transformers' Trainer on MRPC train, bert-base-sized random init, batch 8,
fp32 (tf32 off), 100 optimizer steps on the same GPU, the first step left out. Prints one JSON line.
Data and tokenizer come from ../shared/hub (the device reaches no network)."""
import json
import os
import sys
import tempfile
import time

import torch
from datasets import load_dataset
from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification, DataCollatorWithPadding, Trainer,
                          TrainerCallback, TrainingArguments)

STEPS = 100
hub = sys.argv[1] if len(sys.argv) > 1 else "../shared/hub"
model_dir = os.path.join(hub, "models/google-bert/bert-base-uncased")
mrpc = os.path.join(hub, "datasets/nyu-mll/glue/mrpc/train-00000-of-00001.parquet")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

tokenizer = AutoTokenizer.from_pretrained(model_dir)
train = load_dataset("parquet", data_files={"train": mrpc})["train"]
train = train.map(lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True), batched=True)
model = BertForSequenceClassification(BertConfig.from_pretrained(model_dir, num_labels=2))


class StepTimer(TrainerCallback):
    def __init__(self):
        self.steps, self.first, self.last = 0, 0.0, 0.0

    def on_step_end(self, args, state, control, **kwargs):
        torch.cuda.synchronize()
        self.steps += 1
        self.last = time.perf_counter()
        if self.steps == 1:
            self.first = self.last


timer = StepTimer()
with tempfile.TemporaryDirectory() as out:
    args = TrainingArguments(out, per_device_train_batch_size=8, max_steps=STEPS + 1, save_strategy="no",
                             logging_steps=50, disable_tqdm=True, report_to=[])
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[timer])
    result = trainer.train()
seconds = timer.last - timer.first
print(json.dumps({
    "framework": "transformers",
    "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    "device": torch.cuda.get_device_name(0),
    "steps": STEPS,
    "ms_per_step": round(seconds * 1000 / STEPS, 2),
    "samples_per_s": round(STEPS * 8 / seconds, 1),
    "train_loss": result.training_loss,
    "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3),
}))

// `finetune train`: fine-tune a sequence classifier on a Hub dataset, as transformers' run_glue.py does —
// load, tokenize with truncation, train with an evaluation per epoch, print the metrics, save the model.
import { load_dataset } from "../datasets/load.js";
import type { Dataset } from "../datasets/dataset.js";
import { DatasetDict } from "../datasets/dataset_dict.js";
import { ClassLabel, Value } from "../datasets/features.js";
import { AutoTokenizer } from "../tokenizers/auto.js";
import { AutoModelForSequenceClassification } from "../models/auto/auto_factory.js";
import { evaluate } from "../evaluate/index.js";
import { torch } from "../torch.js";
import { TrainingArguments, parse_training_cli } from "../training/training_args.js";
import { Trainer } from "../training/trainer.js";
import type { EvalPrediction } from "../training/trainer_utils.js";

const USAGE =
  "usage: finetune train --model ID_OR_DIR --dataset ID [--dataset_config NAME] [--text_columns a,b] [--label_column label]\n" +
  "                      [--train_split train] [--eval_split validation] [--max_train_samples N] [--max_eval_samples N]\n" +
  "                      [--max_length N] [any TrainingArguments field as --flag, e.g. --num_train_epochs 3 --output_dir DIR]";

interface TrainCliOptions {
  model: string;
  dataset: string;
  dataset_config: string | null;
  text_columns: string[] | null;
  label_column: string;
  train_split: string;
  eval_split: string;
  max_train_samples: number | null;
  max_eval_samples: number | null;
  max_length: number | null;
}

const OWN_FLAGS = ["model", "dataset", "dataset_config", "text_columns", "label_column", "train_split", "eval_split", "max_train_samples", "max_eval_samples", "max_length"];
const GLUE_IDS = ["glue", "nyu-mll/glue"];

function parseOwnFlags(words: string[]): TrainCliOptions {
  const values: Record<string, string> = {};
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    const eq = word.indexOf("=");
    const flag = word.startsWith("--") ? word.slice(2, eq >= 0 ? eq : undefined) : null;
    if (flag === null || !OWN_FLAGS.includes(flag)) throw new Error(`unrecognized argument '${word}'\n${USAGE}`);
    const value = eq >= 0 ? word.slice(eq + 1) : words[++i];
    if (value === undefined || value.startsWith("--")) throw new Error(`argument --${flag}: expected one argument\n${USAGE}`);
    values[flag] = value;
  }
  const count = (flag: string): number | null => {
    if (values[flag] === undefined) return null;
    const n = Number(values[flag]);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`argument --${flag}: expected a positive integer, got '${values[flag]}'`);
    return n;
  };
  if (!values.model) throw new Error(`the following arguments are required: --model\n${USAGE}`);
  if (!values.dataset) throw new Error(`the following arguments are required: --dataset\n${USAGE}`);
  return {
    model: values.model,
    dataset: values.dataset,
    dataset_config: values.dataset_config ?? null,
    text_columns: values.text_columns ? values.text_columns.split(",").map((s) => s.trim()).filter(Boolean) : null,
    label_column: values.label_column ?? "label",
    train_split: values.train_split ?? "train",
    eval_split: values.eval_split ?? "validation",
    max_train_samples: count("max_train_samples"),
    max_eval_samples: count("max_eval_samples"),
    max_length: count("max_length"),
  };
}

function split(datasets: DatasetDict, name: string, flag: string): Dataset {
  const ds = datasets[name] as Dataset | undefined;
  if (!ds) throw new Error(`the dataset has no split '${name}' (it has ${Object.keys(datasets).join(", ")}); pass --${flag}`);
  if (ds.num_rows === 0) throw new Error(`the ${name} split is empty`);
  return ds;
}

/** The text columns: given, or the string columns of the dataset (one or two). */
function textColumns(ds: Dataset, given: string[] | null, label: string): string[] {
  const columns = given ?? ds.column_names.filter((c) => c !== label && ds.features[c] instanceof Value && (ds.features[c] as Value).dtype === "string").slice(0, 2);
  if (columns.length === 0 || columns.length > 2) {
    throw new Error(`--text_columns must name one or two text columns (the dataset has ${JSON.stringify(ds.column_names)})`);
  }
  const missing = columns.filter((c) => !ds.column_names.includes(c));
  if (missing.length) throw new Error(`--text_columns: ${JSON.stringify(missing)} not in the dataset; its columns are ${JSON.stringify(ds.column_names)}`);
  return columns;
}

export async function trainCommand(argv: string[]): Promise<void> {
  if (argv.includes("-h") || argv.includes("--help")) {
    console.log(USAGE);
    return;
  }
  const { options: trainingOptions, remaining } = parse_training_cli(argv);
  const cli = parseOwnFlags(remaining);
  const args = new TrainingArguments(null, { eval_strategy: "epoch", ...trainingOptions });

  const raw = await load_dataset(cli.dataset, cli.dataset_config);
  if (!(raw instanceof DatasetDict)) throw new Error(`--dataset ${cli.dataset} loaded as a single split; it needs train and eval splits`);
  let train = split(raw, cli.train_split, "train_split");
  let evalSplit = split(raw, cli.eval_split, "eval_split");
  if (!train.column_names.includes(cli.label_column)) {
    throw new Error(`--label_column '${cli.label_column}' is not a column of the dataset (columns: ${JSON.stringify(train.column_names)})`);
  }
  if (cli.max_train_samples !== null) train = train.select(Array.from({ length: Math.min(cli.max_train_samples, train.num_rows) }, (_, i) => i));
  if (cli.max_eval_samples !== null) evalSplit = evalSplit.select(Array.from({ length: Math.min(cli.max_eval_samples, evalSplit.num_rows) }, (_, i) => i));
  const labelFeature = train.features[cli.label_column];
  if (!(labelFeature instanceof ClassLabel)) {
    throw new Error(`--label_column '${cli.label_column}' must be a ClassLabel column (classification); it is ${String(labelFeature)}`);
  }
  const num_labels = labelFeature.names.length;
  const [first, second] = textColumns(train, cli.text_columns, cli.label_column);

  const tokenizer = await AutoTokenizer.from_pretrained(cli.model);
  const tokenize = (batch: Record<string, string[]>) =>
    tokenizer(batch[first!]!, second ? batch[second]! : null, { truncation: true, max_length: cli.max_length });
  train = train.map(tokenize, { batched: true });
  evalSplit = evalSplit.map(tokenize, { batched: true });
  if (cli.label_column !== "label") {
    train = train.rename_column(cli.label_column, "label");
    evalSplit = evalSplit.rename_column(cli.label_column, "label");
  }

  const model = await AutoModelForSequenceClassification.from_pretrained(cli.model, { num_labels });
  const metric = GLUE_IDS.includes(cli.dataset) && cli.dataset_config ? await evaluate.load("glue", cli.dataset_config) : await evaluate.load("accuracy");
  const compute_metrics = (eval_pred: EvalPrediction) => {
    const [logits, labels] = eval_pred;
    const predictions = torch.argmax(logits!, -1);
    return metric.compute({ predictions, references: labels! }) as Record<string, number>;
  };
  const trainer = new Trainer(model, args, { train_dataset: train, eval_dataset: evalSplit, tokenizer, compute_metrics });
  const result = await trainer.train();
  trainer.save_model();
  trainer.log_metrics("train", result.metrics);
  const metrics = await trainer.evaluate();
  trainer.log_metrics("eval", metrics);
  console.log(`Model saved to ${args.output_dir}`);
}

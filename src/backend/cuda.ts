// torch.cuda: this build has no CUDA backend, so it reports none (and fails clearly when asked to use one).
const NO_CUDA = "CUDA is not available in this build of finetune: tensors run on the CPU (torch.cuda.is_available() is false)";

export const cuda = {
  is_available: (): boolean => false,
  device_count: (): number => 0,
  synchronize: (): void => {},
  current_device: (): number => {
    throw new Error(NO_CUDA);
  },
  max_memory_allocated: (): number => 0,
  memory_allocated: (): number => 0,
  reset_peak_memory_stats: (): void => {},
  manual_seed: (_seed: number): void => {},
  manual_seed_all: (_seed: number): void => {},
};

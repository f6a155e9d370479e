"""Load a labflow training checkpoint with transformers, as a user would, and print what it
computes: the independent check that labflow's checkpoint folders are real Hugging Face models.

Given a checkpoint folder and token ids, it loads the folder with AutoModelForCausalLM
(float32, eager attention) and AutoTokenizer, renders one chat with the tokenizer's chat
template (so the template in tokenizer_config.json must work), and prints one JSON object:
  {"logits": [[id, value], ...]  every 97th vocabulary id's logit after the last token,
   "argmax": id, "chat": the rendered chat text, "n_params": parameter count}

Setup: the venv of tests/reference/safetensors_fixture.py (torch transformers ...).
    /work/venv-model/bin/python tests/reference/train_load_check.py FOLDER 1 2 3 ...
tests/train.rs runs it when LABFLOW_TORCH_PYTHON names that python.
"""

import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    folder, ids = sys.argv[1], [int(x) for x in sys.argv[2:]]
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    tok = AutoTokenizer.from_pretrained(folder)
    chat = tok.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=False, add_generation_prompt=True)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    step = 97
    print(json.dumps({
        "logits": [[i, float(logits[i])] for i in range(0, logits.shape[0], step)],
        "argmax": int(torch.argmax(logits)),
        "chat": chat,
        "n_params": sum(p.numel() for p in model.parameters()),
    }))


if __name__ == "__main__":
    main()

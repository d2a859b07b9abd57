#!/usr/bin/env python3
"""Golden rendered chat prompts for src/trust/chat.cpp, produced with jinja2 from the models' chat templates.

The templates are the ones shipped in the models' tokenizer_config.json / GGUF (SmolLM2's and Qwen2.5-Coder's
are read from the GGUF files in the model cache when present; without them the stored copies are kept); they are rendered the way Hugging Face transformers renders them
(jinja2 sandbox, trim_blocks=True, lstrip_blocks=True). Output: tests/golden/trust/chat_templates.json
Usage: python3 scripts/ref/trust_chat_golden.py
"""
import json
import os
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "golden", "trust", "chat_templates.json")

SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
           "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
           "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QWEN2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
         "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
         "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
          "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
          "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
          "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}"
          "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
          "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
          "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
          "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
# FastChat's vicuna_v1.1 conversation (sep ' ', sep2 '</s>', roles USER/ASSISTANT) written as a Jinja template.
VICUNA = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
          "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
          "{% set system_message = 'A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user\\'s questions.' %}{% endif %}"
          "{{ system_message + ' ' }}{% for message in loop_messages %}{% if message['role'] == 'user' %}"
          "{{ 'USER: ' + message['content'] + ' ' }}{% elif message['role'] == 'assistant' %}"
          "{{ 'ASSISTANT: ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
          "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
          "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
# Gemma 3 instruction template (system folded into the first user turn), string contents only.
GEMMA = ("{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n"
         "    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
         "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
         "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
         "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
         "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
         "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
         "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
         "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
         "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
         "    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n"
         "{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
          "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
          "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

TEMPLATES = {
    "chatml": (SMOLLM2, "<|im_start|>", "<|im_end|>"),  # SmolLM2's own template
    "qwen2": (QWEN2, "<|im_start|>", "<|im_end|>"),
    "llama2": (LLAMA2, "<s>", "</s>"),
    "vicuna": (VICUNA, "<s>", "</s>"),
    "zephyr": (ZEPHYR, "<s>", "</s>"),
    "gemma": (GEMMA, "<bos>", "<eos>"),
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>"),
}

CONVERSATIONS = [
    ([{"role": "system", "content": "You are a helpful assistant."},
      {"role": "user", "content": "Is the sky blue? Answer yes or no."}], True),
    ([{"role": "user", "content": "  Hello there!\n"}], True),
    ([{"role": "system", "content": "You are a helpful, pattern-following assistant."},
      {"role": "user", "content": "For each snippet of text, label the sentiment."},
      {"role": "assistant", "content": "Sure, I'd be happy to!"},
      {"role": "user", "content": "it 's a charming journey ."}], True),
    ([{"role": "user", "content": "premise: A man sleeps.\nhypothesis: A man rests.\nanswer:"},
      {"role": "assistant", "content": "Yes"}], False),
]


def smollm2_template():
    path = os.path.expanduser("~/.cache/ctrust/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    try:
        import gguf
        r = gguf.GGUFReader(path)
        f = r.fields["tokenizer.chat_template"]
        return bytes(f.parts[f.data[0]]).decode()
    except Exception as e:  # model not fetched: the literal above is a copy of it
        print(f"note: using the stored SmolLM2 template ({e})", file=sys.stderr)
        return SMOLLM2


def gguf_template(path):
    import gguf
    r = gguf.GGUFReader(path)
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode()


def qwen25_template():
    """Qwen2.5-Coder-0.5B-Instruct's template (tool-use branch + default system prompt), from its GGUF; without
    the file, the copy already in the golden file."""
    path = os.path.expanduser("~/.cache/ctrust/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    try:
        return gguf_template(path)
    except Exception as e:
        print(f"note: keeping the stored Qwen2.5 template ({e})", file=sys.stderr)
        with open(OUT) as f:
            return json.load(f)["templates"]["qwen2.5"]["jinja"]


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


def main():
    TEMPLATES["chatml"] = (smollm2_template(),) + TEMPLATES["chatml"][1:]
    TEMPLATES["qwen2.5"] = (qwen25_template(), "<|endoftext|>", "<|im_end|>")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    out = {"generator": "scripts/ref/trust_chat_golden.py, jinja2 " + jinja2.__version__, "templates": {}}
    for name, (text, bos, eos) in TEMPLATES.items():
        tpl = env.from_string(text)
        cases = []
        for messages, gen in CONVERSATIONS:
            rendered = tpl.render(messages=messages, add_generation_prompt=gen, bos_token=bos, eos_token=eos)
            cases.append({"messages": messages, "add_generation_prompt": gen, "text": rendered})
        out["templates"][name] = {"jinja": text, "cases": cases}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()

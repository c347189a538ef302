// SPDX-License-Identifier: GPL-2.0
/*
 * cityedge_i2csim - an I2C adapter whose devices are simulated chips that a
 * test configures from user space through configfs.
 *
 * Written for cityedge's emulated-gateway test (scripts/vm): the agent's
 * drivers talk to /dev/i2c-N with the I2C_RDWR ioctl, so the adapter
 * implements plain I2C transfers (master_xfer). SMBus calls are emulated on
 * top of them by the I2C core.
 *
 * A chip is a directory under /sys/kernel/config/cityedge_i2csim/. Its
 * attributes:
 *
 *   address   7-bit address, 0x03..0x77 (written while disabled)
 *   model     how the chip answers (written while disabled):
 *               bosch      256 byte register file. A one-byte write sets the
 *                          register pointer; a longer write is a list of
 *                          register/value pairs (BME280 datasheet 6.2.1);
 *                          reads return registers from the pointer on,
 *                          incrementing it.
 *               autoinc    256 byte register file. A write sets the pointer
 *                          and stores the bytes after it at consecutive
 *                          registers (QMC5883L); reads as for bosch.
 *               sensirion  command/response: a write starts with a one or
 *                          two byte command; arguments after it are 16-bit
 *                          words each followed by its CRC-8, which is
 *                          checked. The response configured for the command
 *                          can be read once, after its execution time.
 *                          A read with no response waiting, or before the
 *                          execution time, is not acknowledged, as on the
 *                          real chips.
 *   regs      "START B0 B1 ..." (hex) stores bytes from register START on;
 *             reading shows all 256 registers.
 *   commands  one line per command: "CMD [@MS] [B0 B1 ...]" (hex, MS
 *             decimal): the response bytes (CRCs included, as the chip
 *             sends them) of the 1 byte (2 hex digits) or 2 byte (4 hex
 *             digits) command CMD, readable MS milliseconds after the
 *             command. A command without bytes is accepted and answers
 *             nothing. "clear" forgets every command. Reading lists them.
 *   enable    1 attaches the chip to the bus, 0 detaches it.
 *   stats     transfers and NACKs seen by the chip (read only).
 *
 * An address with no enabled chip does not acknowledge (-ENXIO, see
 * Documentation/i2c/fault-codes.rst), so a bus scan finds exactly the
 * simulated chips. A byte the chip would not acknowledge (an unknown
 * command, a bad argument CRC, a malformed register write) ends the
 * transfer with -EIO.
 */

#include <linux/configfs.h>
#include <linux/ctype.h>
#include <linux/i2c.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>

#define SIM_REGS	256
#define SIM_MAX_CMDS	16
#define SIM_MAX_RESP	64
#define SIM_MAX_WAIT_MS	10000

static int bus = 1;
module_param(bus, int, 0444);
MODULE_PARM_DESC(bus, "adapter number, /dev/i2c-<bus> (default 1, as on a Raspberry Pi); -1 picks a free one");

enum sim_model {
	MODEL_NONE,
	MODEL_BOSCH,
	MODEL_AUTOINC,
	MODEL_SENSIRION,
};

static const char *const model_names[] = {
	[MODEL_NONE] = "none",
	[MODEL_BOSCH] = "bosch",
	[MODEL_AUTOINC] = "autoinc",
	[MODEL_SENSIRION] = "sensirion",
};

struct sim_cmd {
	u16 cmd;
	u8 cmd_len;		/* 1 or 2 bytes */
	u8 resp_len;
	unsigned int wait_ms;
	u8 resp[SIM_MAX_RESP];
};

struct sim_chip {
	struct config_item item;
	struct list_head node;	/* in sim_chips, for the chip's lifetime */
	u16 addr;
	enum sim_model model;
	bool enabled;

	/* bosch and autoinc */
	u8 regs[SIM_REGS];
	u8 ptr;

	/* sensirion */
	struct sim_cmd cmds[SIM_MAX_CMDS];
	int ncmds;
	int pending;		/* index in cmds of the response to read, or -1 */
	ktime_t ready;		/* when the pending response can be read */

	unsigned long writes, reads, nacks;
};

/* sim_lock guards sim_chips and every chip's state. */
static DEFINE_MUTEX(sim_lock);
static LIST_HEAD(sim_chips);

static inline struct sim_chip *to_chip(struct config_item *item)
{
	return container_of(item, struct sim_chip, item);
}

/*
 * crc8 is Sensirion's CRC: polynomial 0x31 (x^8 + x^5 + x^4 + 1), initial
 * value 0xFF, no reflection, no final XOR (SHT3x datasheet section 4.12).
 */
static u8 sim_crc8(const u8 *data, size_t len)
{
	u8 crc = 0xFF;
	size_t i;
	int bit;

	for (i = 0; i < len; i++) {
		crc ^= data[i];
		for (bit = 0; bit < 8; bit++)
			crc = (crc & 0x80) ? (u8)(crc << 1) ^ 0x31 : (u8)(crc << 1);
	}
	return crc;
}

static struct sim_chip *sim_find(u16 addr)
{
	struct sim_chip *chip;

	list_for_each_entry(chip, &sim_chips, node)
		if (chip->enabled && chip->addr == addr)
			return chip;
	return NULL;
}

/* ---- the chips' side of a transfer ---- */

static int sim_regs_write(struct sim_chip *chip, const u8 *buf, u16 len)
{
	u16 i;

	if (len == 0)
		return 0;	/* address only: acknowledged */
	chip->ptr = buf[0];
	if (chip->model == MODEL_AUTOINC) {
		for (i = 1; i < len; i++)
			chip->regs[chip->ptr++] = buf[i];
		return 0;
	}
	if (len == 1)
		return 0;
	/* bosch: register/value pairs */
	if (len % 2)
		return -EIO;
	for (i = 0; i < len; i += 2) {
		chip->regs[buf[i]] = buf[i + 1];
		chip->ptr = buf[i] + 1;
	}
	return 0;
}

static int sim_regs_read(struct sim_chip *chip, u8 *buf, u16 len)
{
	u16 i;

	for (i = 0; i < len; i++)
		buf[i] = chip->regs[chip->ptr++];
	return 0;
}

static int sim_cmd_write(struct sim_chip *chip, const u8 *buf, u16 len)
{
	const struct sim_cmd *c;
	u16 i;
	int n;

	if (len == 0)
		return 0;	/* address only: acknowledged */
	/* Longest match first, so a 2-byte command wins over a 1-byte one. */
	for (n = 2; n >= 1; n--) {
		for (i = 0; i < chip->ncmds; i++) {
			c = &chip->cmds[i];
			if (c->cmd_len != n || len < n)
				continue;
			if (n == 2 && c->cmd == ((u16)buf[0] << 8 | buf[1]))
				goto found;
			if (n == 1 && c->cmd == buf[0])
				goto found;
		}
	}
	return -EIO;		/* unknown command: not acknowledged */
found:
	if ((len - c->cmd_len) % 3)
		return -EIO;
	for (n = c->cmd_len; n < len; n += 3)
		if (sim_crc8(buf + n, 2) != buf[n + 2])
			return -EIO;
	chip->pending = c->resp_len ? (int)(c - chip->cmds) : -1;
	chip->ready = ktime_add_ms(ktime_get(), c->wait_ms);
	return 0;
}

static int sim_cmd_read(struct sim_chip *chip, u8 *buf, u16 len)
{
	const struct sim_cmd *c;
	u16 i;

	if (chip->pending < 0 || ktime_before(ktime_get(), chip->ready))
		return -ENXIO;	/* nothing to send yet: read header NACKed */
	c = &chip->cmds[chip->pending];
	for (i = 0; i < len; i++)
		buf[i] = i < c->resp_len ? c->resp[i] : 0xFF;
	chip->pending = -1;
	return 0;
}

static int sim_xfer(struct i2c_adapter *adap, struct i2c_msg *msgs, int num)
{
	const u16 unsupported = I2C_M_TEN | I2C_M_RECV_LEN | I2C_M_NO_RD_ACK |
				I2C_M_IGNORE_NAK | I2C_M_REV_DIR_ADDR | I2C_M_NOSTART;
	struct sim_chip *chip;
	int i, ret = 0;

	mutex_lock(&sim_lock);
	for (i = 0; i < num && ret == 0; i++) {
		struct i2c_msg *m = &msgs[i];
		bool rd = m->flags & I2C_M_RD;

		if (m->flags & unsupported) {
			ret = -EOPNOTSUPP;
			break;
		}
		chip = sim_find(m->addr);
		if (!chip) {
			ret = -ENXIO;
			break;
		}
		if (chip->model == MODEL_SENSIRION)
			ret = rd ? sim_cmd_read(chip, m->buf, m->len) :
				   sim_cmd_write(chip, m->buf, m->len);
		else
			ret = rd ? sim_regs_read(chip, m->buf, m->len) :
				   sim_regs_write(chip, m->buf, m->len);
		if (rd)
			chip->reads++;
		else
			chip->writes++;
		if (ret)
			chip->nacks++;
	}
	mutex_unlock(&sim_lock);
	return ret ? ret : num;
}

static u32 sim_functionality(struct i2c_adapter *adap)
{
	return I2C_FUNC_I2C | I2C_FUNC_SMBUS_EMUL;
}

static const struct i2c_algorithm sim_algorithm = {
	.master_xfer	= sim_xfer,
	.functionality	= sim_functionality,
};

static struct i2c_adapter sim_adapter = {
	.owner	= THIS_MODULE,
	.class	= 0,	/* no probing of legacy drivers on this bus */
	.algo	= &sim_algorithm,
	.name	= "cityedge i2c simulator",
};

/* ---- configfs ---- */

/* next_token splits off the next blank-separated word of *s, or NULL. */
static char *next_token(char **s)
{
	char *p = skip_spaces(*s), *start;

	if (!*p)
		return NULL;
	start = p;
	while (*p && !isspace(*p))
		p++;
	if (*p)
		*p++ = '\0';
	*s = p;
	return start;
}

static ssize_t address_show(struct config_item *item, char *page)
{
	struct sim_chip *chip = to_chip(item);
	ssize_t n;

	mutex_lock(&sim_lock);
	n = sprintf(page, "0x%02x\n", chip->addr);
	mutex_unlock(&sim_lock);
	return n;
}

static ssize_t address_store(struct config_item *item, const char *page, size_t count)
{
	struct sim_chip *chip = to_chip(item);
	u16 addr;
	int ret;

	ret = kstrtou16(page, 0, &addr);
	if (ret)
		return ret;
	if (addr < 0x03 || addr > 0x77)
		return -EINVAL;	/* not a 7-bit device address */
	mutex_lock(&sim_lock);
	if (chip->enabled)
		ret = -EBUSY;
	else
		chip->addr = addr;
	mutex_unlock(&sim_lock);
	return ret ? ret : count;
}

static ssize_t model_show(struct config_item *item, char *page)
{
	struct sim_chip *chip = to_chip(item);
	ssize_t n;

	mutex_lock(&sim_lock);
	n = sprintf(page, "%s\n", model_names[chip->model]);
	mutex_unlock(&sim_lock);
	return n;
}

static ssize_t model_store(struct config_item *item, const char *page, size_t count)
{
	struct sim_chip *chip = to_chip(item);
	int m, ret = 0;

	m = sysfs_match_string(model_names, page);
	if (m <= MODEL_NONE)
		return -EINVAL;
	mutex_lock(&sim_lock);
	if (chip->enabled)
		ret = -EBUSY;
	else
		chip->model = m;
	mutex_unlock(&sim_lock);
	return ret ? ret : count;
}

static ssize_t regs_show(struct config_item *item, char *page)
{
	struct sim_chip *chip = to_chip(item);
	int row, col;
	ssize_t n = 0;

	mutex_lock(&sim_lock);
	for (row = 0; row < SIM_REGS; row += 16) {
		n += sprintf(page + n, "%02x:", row);
		for (col = 0; col < 16; col++)
			n += sprintf(page + n, " %02x", chip->regs[row + col]);
		n += sprintf(page + n, "\n");
	}
	mutex_unlock(&sim_lock);
	return n;
}

static ssize_t regs_store(struct config_item *item, const char *page, size_t count)
{
	struct sim_chip *chip = to_chip(item);
	char *copy, *cur, *tok;
	u8 start, vals[SIM_REGS];
	int n = 0, ret;

	copy = kstrndup(page, count, GFP_KERNEL);
	if (!copy)
		return -ENOMEM;
	cur = copy;
	tok = next_token(&cur);
	ret = tok ? kstrtou8(tok, 16, &start) : -EINVAL;
	while (!ret && (tok = next_token(&cur))) {
		if (start + n >= SIM_REGS) {
			ret = -EINVAL;	/* past the last register */
			break;
		}
		ret = kstrtou8(tok, 16, &vals[n++]);
	}
	kfree(copy);
	if (!ret && n == 0)
		ret = -EINVAL;
	if (ret)
		return ret;
	mutex_lock(&sim_lock);
	memcpy(chip->regs + start, vals, n);
	mutex_unlock(&sim_lock);
	return count;
}

static int parse_command(char *line, struct sim_cmd *c)
{
	char *tok, *cur = line;
	size_t digits;
	int ret;

	memset(c, 0, sizeof(*c));
	tok = next_token(&cur);
	if (!tok)
		return -EINVAL;
	if (tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X'))
		tok += 2;
	digits = strlen(tok);
	if (digits != 2 && digits != 4)
		return -EINVAL;
	c->cmd_len = digits / 2;
	ret = kstrtou16(tok, 16, &c->cmd);
	if (ret)
		return ret;
	while ((tok = next_token(&cur))) {
		if (tok[0] == '@' && c->resp_len == 0 && c->wait_ms == 0) {
			ret = kstrtouint(tok + 1, 10, &c->wait_ms);
			if (ret)
				return ret;
			if (c->wait_ms > SIM_MAX_WAIT_MS)
				return -EINVAL;
			continue;
		}
		if (c->resp_len == SIM_MAX_RESP)
			return -E2BIG;
		ret = kstrtou8(tok, 16, &c->resp[c->resp_len++]);
		if (ret)
			return ret;
	}
	return 0;
}

static int add_command(struct sim_chip *chip, const struct sim_cmd *c)
{
	int i;

	for (i = 0; i < chip->ncmds; i++) {
		if (chip->cmds[i].cmd == c->cmd && chip->cmds[i].cmd_len == c->cmd_len) {
			chip->cmds[i] = *c;
			return 0;
		}
	}
	if (chip->ncmds == SIM_MAX_CMDS)
		return -ENOSPC;
	chip->cmds[chip->ncmds++] = *c;
	return 0;
}

static ssize_t commands_show(struct config_item *item, char *page)
{
	struct sim_chip *chip = to_chip(item);
	ssize_t n = 0;
	int i, j;

	mutex_lock(&sim_lock);
	for (i = 0; i < chip->ncmds; i++) {
		const struct sim_cmd *c = &chip->cmds[i];

		n += scnprintf(page + n, PAGE_SIZE - n, "%0*x @%u", 2 * c->cmd_len, c->cmd, c->wait_ms);
		for (j = 0; j < c->resp_len; j++)
			n += scnprintf(page + n, PAGE_SIZE - n, " %02x", c->resp[j]);
		n += scnprintf(page + n, PAGE_SIZE - n, "\n");
	}
	mutex_unlock(&sim_lock);
	return n;
}

static ssize_t commands_store(struct config_item *item, const char *page, size_t count)
{
	struct sim_chip *chip = to_chip(item);
	struct sim_cmd *c;
	char *copy, *cur, *line;
	int ret = 0;

	copy = kstrndup(page, count, GFP_KERNEL);
	c = kmalloc(sizeof(*c), GFP_KERNEL);
	if (!copy || !c) {
		ret = -ENOMEM;
		goto out;
	}
	cur = copy;
	while (!ret && (line = strsep(&cur, "\n"))) {
		line = strim(line);
		if (!*line)
			continue;
		if (!strcmp(line, "clear")) {
			mutex_lock(&sim_lock);
			chip->ncmds = 0;
			chip->pending = -1;
			mutex_unlock(&sim_lock);
			continue;
		}
		ret = parse_command(line, c);
		if (ret)
			break;
		mutex_lock(&sim_lock);
		ret = add_command(chip, c);
		mutex_unlock(&sim_lock);
	}
out:
	kfree(c);
	kfree(copy);
	return ret ? ret : count;
}

static ssize_t enable_show(struct config_item *item, char *page)
{
	struct sim_chip *chip = to_chip(item);
	ssize_t n;

	mutex_lock(&sim_lock);
	n = sprintf(page, "%d\n", chip->enabled);
	mutex_unlock(&sim_lock);
	return n;
}

static ssize_t enable_store(struct config_item *item, const char *page, size_t count)
{
	struct sim_chip *chip = to_chip(item);
	bool on;
	int ret;

	ret = kstrtobool(page, &on);
	if (ret)
		return ret;
	mutex_lock(&sim_lock);
	if (on && !chip->enabled) {
		if (chip->model == MODEL_NONE || chip->addr == 0)
			ret = -EINVAL;	/* set address and model first */
		else if (sim_find(chip->addr))
			ret = -EADDRINUSE;
	}
	if (!ret) {
		chip->enabled = on;
		chip->pending = -1;
	}
	mutex_unlock(&sim_lock);
	return ret ? ret : count;
}

static ssize_t stats_show(struct config_item *item, char *page)
{
	struct sim_chip *chip = to_chip(item);
	ssize_t n;

	mutex_lock(&sim_lock);
	n = sprintf(page, "writes %lu reads %lu nacks %lu\n", chip->writes, chip->reads, chip->nacks);
	mutex_unlock(&sim_lock);
	return n;
}

CONFIGFS_ATTR(, address);
CONFIGFS_ATTR(, model);
CONFIGFS_ATTR(, regs);
CONFIGFS_ATTR(, commands);
CONFIGFS_ATTR(, enable);
CONFIGFS_ATTR_RO(, stats);

static struct configfs_attribute *chip_attrs[] = {
	&attr_address,
	&attr_model,
	&attr_regs,
	&attr_commands,
	&attr_enable,
	&attr_stats,
	NULL,
};

static void chip_release(struct config_item *item)
{
	kfree(to_chip(item));
}

static struct configfs_item_operations chip_item_ops = {
	.release = chip_release,
};

static const struct config_item_type chip_type = {
	.ct_item_ops	= &chip_item_ops,
	.ct_attrs	= chip_attrs,
	.ct_owner	= THIS_MODULE,
};

static struct config_item *sim_make_item(struct config_group *group, const char *name)
{
	struct sim_chip *chip;

	chip = kzalloc(sizeof(*chip), GFP_KERNEL);
	if (!chip)
		return ERR_PTR(-ENOMEM);
	chip->pending = -1;
	config_item_init_type_name(&chip->item, name, &chip_type);
	mutex_lock(&sim_lock);
	list_add_tail(&chip->node, &sim_chips);
	mutex_unlock(&sim_lock);
	return &chip->item;
}

static void sim_drop_item(struct config_group *group, struct config_item *item)
{
	struct sim_chip *chip = to_chip(item);

	mutex_lock(&sim_lock);
	list_del(&chip->node);
	mutex_unlock(&sim_lock);
	config_item_put(item);
}

static struct configfs_group_operations sim_group_ops = {
	.make_item	= sim_make_item,
	.drop_item	= sim_drop_item,
};

static const struct config_item_type sim_subsys_type = {
	.ct_group_ops	= &sim_group_ops,
	.ct_owner	= THIS_MODULE,
};

static struct configfs_subsystem sim_subsys = {
	.su_group = {
		.cg_item = {
			.ci_namebuf	= "cityedge_i2csim",
			.ci_type	= &sim_subsys_type,
		},
	},
};

static int __init sim_init(void)
{
	int ret;

	config_group_init(&sim_subsys.su_group);
	mutex_init(&sim_subsys.su_mutex);
	ret = configfs_register_subsystem(&sim_subsys);
	if (ret)
		return ret;

	if (bus >= 0) {
		sim_adapter.nr = bus;
		ret = i2c_add_numbered_adapter(&sim_adapter);
	} else {
		ret = i2c_add_adapter(&sim_adapter);
	}
	if (ret) {
		configfs_unregister_subsystem(&sim_subsys);
		return ret;
	}
	pr_info("cityedge_i2csim: simulated chips on i2c-%d, configured in configfs\n", sim_adapter.nr);
	return 0;
}

static void __exit sim_exit(void)
{
	i2c_del_adapter(&sim_adapter);
	configfs_unregister_subsystem(&sim_subsys);
}

module_init(sim_init);
module_exit(sim_exit);

MODULE_DESCRIPTION("I2C adapter with configfs-defined simulated chips, for cityedge's emulated gateway test");
MODULE_AUTHOR("cityedge");
MODULE_LICENSE("GPL");
